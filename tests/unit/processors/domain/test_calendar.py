from datetime import date

from processors.domain.calendar import add_days, event_date, instant_key, latest, period_start, previous_month


def test_event_date_is_shanghai_calendar_date():
    assert event_date("2024-01-31T23:30:00+00:00") == "2024-02-01"
    assert event_date("2024-01-31T15:59:59Z") == "2024-01-31"
    assert event_date("2024-01-31T16:00:00Z") == "2024-02-01"
    assert event_date("2024-03-05T00:10:00+08:00") == "2024-03-05"
    assert event_date("2024-03-05T00:10:00-05:00") == "2024-03-05"  # 13:10 in Shanghai


def test_year_boundary_in_shanghai():
    assert event_date("2023-12-31T16:00:00+00:00") == "2024-01-01"


def test_naive_timestamp_is_read_as_shanghai_time():
    assert event_date("2024-03-05T23:00:00") == "2024-03-05"
    assert instant_key("2024-03-05T23:00:00") == instant_key("2024-03-05T23:00:00+08:00")


def test_instant_key_orders_by_moment_not_text():
    a = "2024-03-05T10:00:00+08:00"  # 02:00Z
    b = "2024-03-05T03:00:00+00:00"  # 03:00Z, earlier text-wise? no: compare keys
    c = "2024-03-04T22:30:00-05:00"  # 03:30Z
    assert instant_key(a) < instant_key(b) < instant_key(c)
    assert instant_key("2024-03-05T10:00:00+08:00") == instant_key("2024-03-05T02:00:00Z")
    assert instant_key("2024-03-05T02:00:00.5Z") > instant_key("2024-03-05T02:00:00Z")
    assert len(instant_key("2024-03-05T02:00:00Z")) == len(instant_key("2024-03-05T02:00:00.123456Z"))


def test_latest_keeps_the_text_of_the_latest_moment():
    assert latest(["2024-03-05T10:00:00+08:00", "2024-03-05T01:00:00Z"]) == "2024-03-05T10:00:00+08:00"
    assert latest(["2024-03-05T10:00:00+08:00", "2024-03-05T02:00:01Z"]) == "2024-03-05T02:00:01Z"


def test_month_helpers():
    assert period_start("2024-02") == "2024-02-01"
    assert previous_month(date(2024, 1, 15)) == "2023-12"
    assert previous_month(date(2024, 3, 1)) == "2024-02"
    assert previous_month(date(2024, 3, 31)) == "2024-02"
    assert add_days("2024-02-28", 1) == date(2024, 2, 29)
    assert add_days(date(2024, 3, 1), -1) == date(2024, 2, 29)


def test_fast_path_agrees_with_zoneinfo_and_old_dst_years_use_zoneinfo():
    from datetime import datetime

    from processors.domain.calendar import BUSINESS_TZ

    for text in ("2024-03-05T23:59:59+08:00", "1992-01-01T00:00:00+08:00", "2024-02-29T00:00:00.5+08:00"):
        assert event_date(text) == datetime.fromisoformat(text).astimezone(BUSINESS_TZ).date().isoformat()
    # 1988 summer: Shanghai observed DST (+09:00), so 23:30+08:00 was already the next day locally
    assert event_date("1988-07-01T23:30:00+08:00") == "1988-07-02"

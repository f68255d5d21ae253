"""Webhook subscriptions (policy ``admin``, audited like every admin route).

- ``POST /api/webhooks`` ``{"url", "rules"?, "towns"?, "description"?}`` → 201 with the
  subscription and its ``secret`` (``whsec_...``), shown only this once;
- ``GET /api/webhooks``, ``GET /api/webhooks/{subscription_id}`` (never the secret);
- ``DELETE /api/webhooks/{subscription_id}``: stops deliveries (pending ones become ``cancelled``);
  from then on the subscription and its delivery log answer 404 (the row is kept: ``GET
  /api/webhooks?include_deleted=true`` lists it, with ``deleted_at``);
- ``GET /api/webhooks/{subscription_id}/deliveries?status=&alert_id=&limit=&offset=``: the delivery log.

The tables and their SQL are ``projections/webhook_store.py``; this module only calls it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field, field_validator

from projections.api.context import Api
from projections.api.guard import PRINCIPAL_KEY
from projections.api.models import Deliveries, Subscription, SubscriptionCreated, Subscriptions
from projections.api.params import Limit, Offset, StrictBool
from projections.api.problems import Problem, responses

_PORT = "(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
#: what a subscription URL may be (the schema says the same): http(s), a host name or IPv4 address
#: (no [IPv6] literal: a pattern cannot tell a valid one), an optional port, no credentials (a
#: webhook authenticates with its signature), no spaces
URL_PATTERN = "^https?://[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?" + _PORT + "(/[!-~]{0,1900})?$"
URL_RE = re.compile(URL_PATTERN)
#: a DNS label (letters, digits, hyphens inside; at most 63), of the host as httpx sends it (IDNA)
LABEL_RE = re.compile("[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")

router = APIRouter(tags=["webhooks"])
SubscriptionId = Annotated[str, Path(max_length=40, description="wh_...")]
UNKNOWN = responses(s404="No webhook subscription with this id")


class SubscriptionIn(BaseModel):
    url: str = Field(max_length=2048, json_schema_extra={"pattern": URL_PATTERN},
                     description="http(s) URL that receives a signed POST per alert change; no user:password@")
    rules: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=50, description="only these rules (default: every rule)")
    towns: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None, max_length=500, description="only alerts of these towns (default: every town)")
    description: str | None = Field(default=None, max_length=256)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not URL_RE.fullmatch(value):
            raise ValueError("must be an absolute http:// or https:// URL (host name or IPv4 address, optional "
                             "port and path; no user:password@, no spaces)")
        usable_host(value)
        return value


def usable_host(url: str) -> None:
    """Raise ValueError unless httpx can send to ``url``'s host: a valid IP address, or a host name
    of DNS labels (its IDNA form).  The pattern let through ``1.2.3.999`` (httpx: InvalidURL) and
    ``xn--zz.example`` (IDNAError): each POST raised and killed the subscription's worker thread."""
    try:
        parsed = httpx.URL(url)
        host, raw = parsed.host, parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, ValueError) as exc:  # IDNAError is a ValueError
        raise ValueError(f"the URL's host cannot be used: {type(exc).__name__}: {exc}") from None
    if _is_ip(host):
        return
    labels = raw.split(".")
    if not all(LABEL_RE.fullmatch(label) for label in labels) or labels[-1].isdigit() or len(raw) > 253:
        raise ValueError("the URL's host must be a valid IP address or a host name of dot-separated labels "
                         "(letters, digits and inner hyphens, 63 at most each; the last not all digits)")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _creator(request: Request) -> str | None:
    principal = request.scope.get(PRINCIPAL_KEY)
    return None if principal is None else principal.name


@router.post("/api/webhooks", status_code=201, summary="Subscribe a URL to alerts (admin)",
             response_model=SubscriptionCreated)
def create_subscription(api: Api, request: Request, body: SubscriptionIn) -> dict[str, Any]:
    start = api.store.outbox_last_seq()  # only changes committed from now on (the active store's outbox)
    return api.webhooks().create(body.url, rules=body.rules, towns=body.towns, description=body.description,
                                 created_by=_creator(request), start_after_seq=start)


@router.get("/api/webhooks", summary="Webhook subscriptions (admin)", response_model=Subscriptions)
def list_subscriptions(api: Api, include_deleted: Annotated[StrictBool, Query()] = False) -> dict[str, Any]:
    return {"items": api.webhooks().list(include_deleted=include_deleted)}


@router.get("/api/webhooks/{subscription_id}", summary="One webhook subscription (admin)",
            response_model=Subscription, responses=UNKNOWN)
def get_subscription(api: Api, subscription_id: SubscriptionId) -> dict[str, Any]:
    return _active(api, subscription_id)


def _active(api: Api, subscription_id: str) -> dict[str, Any]:
    found = api.webhooks().get(subscription_id)
    if found is None:
        raise Problem(404, "no webhook subscription with this subscription_id")
    if not found["active"]:
        raise Problem(404, f"the webhook subscription was deleted at {found['deleted_at']} (GET /api/webhooks?"
                           "include_deleted=true lists it)")
    return found


@router.delete("/api/webhooks/{subscription_id}", summary="Unsubscribe (admin)", response_model=Subscription,
               responses=UNKNOWN)
def delete_subscription(api: Api, subscription_id: SubscriptionId) -> dict[str, Any]:
    found = api.webhooks().delete(subscription_id)
    if found is None:
        raise Problem(404, "no webhook subscription with this subscription_id")
    return found


@router.get("/api/webhooks/{subscription_id}/deliveries", summary="Delivery log of a subscription (admin)",
            response_model=Deliveries, responses=UNKNOWN)
def list_deliveries(
    api: Api,
    subscription_id: SubscriptionId,
    status: Annotated[Literal["pending", "delivered", "failed", "cancelled"] | None, Query()] = None,
    alert_id: Annotated[str | None, Query(max_length=255)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    _active(api, subscription_id)
    return api.webhooks().deliveries(subscription_id, status=status, alert_id=alert_id, limit=limit, offset=offset)

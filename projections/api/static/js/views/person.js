/* The person page (#/person/<person_id>): who (name, phone, town, category, grade, status), what is
 * open (alerts and warnings, with their reasons and actions), what was done (handled alerts with
 * who did what, when, and the note), and the timeline of events - and the ID-number lookup that
 * leads here.
 *
 * /api/persons/{id}/record answers only a caseworker of the person's current town or an admin, and
 * audits the read; it is asked when the page opens, after an action, and when the stream says
 * something changed for this person - not on a timer.
 * The ID number of a lookup goes in a POST body only: never in the address, storage or a log.
 *
 * Admins also see who has read this person's data (/api/audit?person_id=, itself audited): the
 * page, lookups, actions, and every list and stream that showed the person - what the federation
 * answers a person who asks "who has looked at my record?".
 */
import {
  $, S, api, app, fmtInt, fmtTime, fmtYuan, h, name, t, toast, todayShanghai, townName,
} from "../core.js";
import { lockedText } from "./alerts.js";
import { alertItem, warningItem } from "./items.js";

const TIMELINE_FIRST = 30;
const READS_SHOWN = 20;
const ID_NUMBER = /^[0-9]{17}[0-9Xx]$/;

export async function loadPerson() {
  const id = S.personId;
  if (!id) return;
  if (!S.token || S.tokenState === "invalid" || S.tokenState === "forbidden") { S.person = null; S.personError = null; renderPerson(); return; }
  try {
    const record = await api(`/api/persons/${encodeURIComponent(id)}/record`, { auth: true });
    if (id !== S.personId) return;  // another person opened meanwhile
    const reads = S.me && S.me.role === "admin" ? await readsOf(id) : null;
    if (id !== S.personId) return;
    S.person = record; S.personError = null; S.personReads = reads;
  } catch (err) {
    if (id !== S.personId) return;
    if (err.status === 401) S.tokenState = "invalid";
    S.person = null; S.personError = err.status || 0; S.personReads = null;
  }
  renderPerson();
}

async function readsOf(id) {
  try {
    return await api(`/api/audit?person_id=${encodeURIComponent(id)}&limit=${READS_SHOWN}`, { auth: true });
  } catch (err) {
    console.warn("audit", err);
    return null;  // the page still shows the person; the section is left out
  }
}

export function renderPerson() {
  const box = $("person-page");
  if (!S.personId) { box.replaceChildren(); return; }
  if (!S.token || S.tokenState === "invalid" || S.tokenState === "forbidden") {
    box.replaceChildren(h("section", { class: "card" }, h("div", { class: "locked lock", text: lockedText() })));
    return;
  }
  if (S.personError) {
    const text = S.personError === 404 ? t("person_not_found") : S.personError === 403 ? t("person_forbidden")
      : t("action_failed", { msg: `HTTP ${S.personError}` });
    box.replaceChildren(h("section", { class: "card" }, h("div", { class: "locked", "data-error": S.personError, text })));
    return;
  }
  if (!S.person) { box.replaceChildren(h("section", { class: "card" }, h("div", { class: "loading", text: t("loading") }))); return; }
  const rec = S.person;
  const reload = () => { S.dirtyPerson = true; app.refresh(); };
  const p = rec.person || {};
  const who = (item) => Object.assign({}, item, { name: p.name, phone: p.phone, person_town: p.town, town: item.town || p.town });
  box.replaceChildren(
    profile(rec.person || { person_id: S.personId }),
    section("person-open", t("person_open_alerts"), rec.open_alerts.length,
      rec.open_alerts.map((a) => alertItem(who(a), reload, { person: false })), t("person_none_open")),
    section("person-warnings", t("person_warnings", { d: rec.as_of }), rec.warnings.length,
      rec.warnings.map((w) => warningItem(who(w), rec.as_of, reload, { person: false })), t("person_none_warnings")),
    section("person-handled", t("person_handled"), rec.handled_alerts.length,
      rec.handled_alerts.map(handled), t("person_none_handled")),
    timeline(rec.events, rec.person && rec.person.town),
    S.personReads ? reads(S.personReads) : null);
}

function section(id, title, n, children, empty) {
  return h("section", { class: "card", id },
    h("div", { class: "card-head" }, h("h2", {}, title, h("span", { class: "count", text: fmtInt(n) }))),
    children.length ? h("div", { class: "queue-list" }, ...children) : h("div", { class: "locked empty", text: empty }));
}

function field(label, value, attrs) {
  return h("div", Object.assign({ class: "pf" }, attrs || {}), h("span", { class: "pf-label", text: label }),
    h("span", { class: "pf-value" }, value === null || value === undefined || value === "" ? "—" : value));
}

function age(birth) {
  if (!birth) return "";
  const today = todayShanghai();
  let years = +today.slice(0, 4) - +birth.slice(0, 4);
  if (today.slice(5) < birth.slice(5)) years -= 1;
  return t("age", { n: years });
}

function profile(p) {
  const status = p.status || "active";
  return h("section", { class: "card profile", id: "person-profile", "data-person": p.person_id },
    h("div", { class: "profile-head" },
      h("div", {},
        h("h2", { class: "profile-name" + (p.name ? "" : " unnamed"), text: p.name || t("no_name") }),
        h("div", { class: "card-sub", text: `${townName(p.town)}${p.village ? " · " + p.village : ""}` })),
      h("span", { class: "pill big ps-" + status, text: name("pstatus", status) +
        (status !== "active" && p.status_effective ? ` · ${p.status_effective}` : "") }),
      p.phone ? h("a", { class: "btn call", href: "tel:" + p.phone.replace(/[^0-9+]/g, ""), text: `${t("call")} ${p.phone}` }) : null),
    h("div", { class: "profile-grid" },
      field(t("p_phone"), p.phone),
      field(t("p_town"), townName(p.town)),
      field(t("p_village"), p.village),
      field(t("p_category"), p.category ? name("category", p.category) : null),
      field(t("p_grade"), p.grade ? t("grade_n", { n: p.grade }) : null),
      field(t("p_hardship"), p.hardship === undefined || p.hardship === null ? null : t(p.hardship ? "yes" : "no")),
      field(t("p_birth"), p.birth_date ? `${p.birth_date}（${age(p.birth_date)}）` : null),
      field(t("p_registered"), p.registered_on),
      field(t("p_cert"), p.certificate_expires),
      field(t("p_last_visit"), p.last_home_visit),
      field(t("p_id"), p.person_id, { class: "pf mono-value" })));
}

function actionText(x) {
  if (x.action === "assign") return t("h_assign", { who: x.assignee || "?" });
  return t("h_" + x.action);
}

function handled(a) {
  const history = [{ at: a.detected_at, text: t("h_detected"), by: "", note: "" },
    ...(a.actions || []).map((x) => ({ at: x.at, text: actionText(x), by: x.by, note: x.note || "", action: x.action }))];
  return h("div", { class: "handled", "data-alert-id": a.alert_id, "data-state": a.status },
    h("div", { class: "handled-head" },
      h("span", { class: `sev sev-${a.severity}`, text: t("sev_" + a.severity) }),
      h("span", { class: "rule", text: name("rule", a.rule) }),
      h("span", { class: "pill st-" + (a.status === "resolved" ? "resolved" : a.acknowledged_by ? "acknowledged" : "open"),
        text: t("status_" + (a.status === "resolved" ? "resolved" : a.acknowledged_by ? "acknowledged" : "open")) })),
    h("div", { class: "reason", text: S.lang === "en" ? a.reason_en || a.reason_zh : a.reason_zh || a.reason_en }),
    h("ol", { class: "history" }, ...history.map((x) => h("li", { "data-action": x.action || "detected" },
      h("span", { class: "h-time", text: fmtTime(x.at) }),
      h("span", { class: "h-what" }, h("strong", { text: x.text }), x.by ? ` · ${x.by}` : ""),
      x.note ? h("span", { class: "h-note", text: x.note }) : null))));
}

// ------------------------------------------------------------------ the timeline
function eventSummary(e) {
  const p = e.payload || {};
  switch (e.type) {
    case "person.registered":
      return [p.category ? name("category", p.category) : "", p.grade ? t("grade_n", { n: p.grade }) : "",
        p.hardship ? t("p_hardship") : "", p.certificate_expires ? `${t("p_cert")} ${p.certificate_expires}` : ""].filter(Boolean).join(" · ");
    case "person.profile_changed":
      return Object.entries(p).map(([k, v]) => `${name("field", k)} → ${k === "category" ? name("category", v)
        : k === "grade" ? t("grade_n", { n: v }) : k === "hardship" ? t(v ? "yes" : "no") : v}`).join("；");
    case "person.status_changed":
      return t("effective", { s: name("pstatus", p.status), d: p.effective_date });
    case "visit.completed":
      return [name("visit_kind", p.visit_kind), p.visitor ? t("visitor", { v: p.visitor }) : "",
        p.hazards && p.hazards.length ? t("hazards_found", { h: p.hazards.map((x) => name("hazard", x)).join("、") }) : ""]
        .filter(Boolean).join(" · ");
    case "payment.disbursed":
      return `${name("program", p.program)} ${p.period || ""} · ${t("amount_yuan", { v: fmtYuan(p.amount_fen) })}`;
    case "payment.reversed":
      return t("reverses", { id: String(p.reverses || "").slice(0, 8), r: p.reason || "" });
    case "need.registered":
      return `${name("need", p.need)} · ${t("need_ref", { id: p.need_id })}`;
    case "service.delivered":
      return name("service", p.service) + (p.need_id ? ` · ${t("need_ref", { id: p.need_id })}` : "");
    case "job.placed":
      return `${name("placement", p.placement_kind)} · ${t("employer", { e: p.employer })}` + (p.need_id ? ` · ${t("need_ref", { id: p.need_id })}` : "");
    case "alert.handled":
      return [`${actionText(p)} · ${p.by || ""}`, p.note || ""].filter(Boolean).join(" · ");
    case "warning.snoozed":
      return [t("snoozed_mark", { d: p.until }), p.by, p.reason].filter(Boolean).join(" · ");
    default:
      return "";
  }
}

function timeline(events, home) {
  const newest = events.slice().reverse();
  const shown = S.personAll ? newest : newest.slice(0, TIMELINE_FIRST);
  return h("section", { class: "card", id: "person-timeline" },
    h("div", { class: "card-head" }, h("h2", {}, t("person_timeline"), h("span", { class: "count", text: fmtInt(events.length) }))),
    h("ol", { class: "timeline" }, ...shown.map((e) => h("li", { class: "tl-" + e.type.split(".")[0], "data-type": e.type, "data-event-id": e.event_id },
      h("span", { class: "tl-date", text: e.date || String(e.occurred_at || "").slice(0, 10) }),
      h("span", { class: "tl-type" + (e.reversed_by ? " reversed" : ""), text: name("event", e.type) }),
      h("span", { class: "tl-text" }, eventSummary(e), e.reversed_by ? h("span", { class: "pill st-open", text: t("reversed_mark") }) : null,
        e.town && e.town !== home ? h("span", { class: "muted", text: ` · ${townName(e.town)}` }) : null)))),
    newest.length > shown.length ? h("button", { type: "button", class: "btn small ghost more", text: t("timeline_more", { n: fmtInt(newest.length) }),
      onclick: () => { S.personAll = true; renderPerson(); } }) : null);
}

// ------------------------------------------------------------------ who read this person (admins)
function reads(answer) {
  return h("section", { class: "card", id: "person-reads" },
    h("div", { class: "card-head" },
      h("div", {}, h("h2", {}, t("person_reads"), h("span", { class: "count", text: fmtInt(answer.total) })),
        h("div", { class: "card-sub", text: t("person_reads_sub") }),
        answer.archived_before ? h("div", { class: "card-sub archived", text: t("person_reads_archived", { d: answer.archived_before }) }) : null)),
    answer.items.length ? h("ol", { class: "reads" }, ...answer.items.map(readItem))
      : h("div", { class: "locked empty", text: t("person_reads_none") }),
    answer.total > answer.items.length
      ? h("div", { class: "card-sub more", text: t("person_reads_more", { n: fmtInt(answer.items.length), total: fmtInt(answer.total) }) })
      : null);
}

function readWhat(row) {
  const path = row.path;
  if (row.role === "subscriber") return t("read_webhook");
  if (row.method === "CLI") return path === "careledger export" ? t("read_export") : path;
  if (path.endsWith("/record")) return t("read_record");
  if (path.endsWith("/timeline")) return t("read_timeline");
  if (path === "/api/alerts/stream") return t("read_stream");
  if (path === "/api/alerts") return t("read_alerts");
  if (path === "/api/warnings") return t("read_warnings");
  if (path === "/api/persons/lookup") return t("read_lookup");
  if (path === "/api/audit") return t("read_audit");
  if (/^\/api\/alerts\/[^/]+\/(acknowledge|resolve|assign)$/.test(path)) return t("read_alert_action");
  if (path.endsWith("/snooze")) return t("read_snooze");
  return path;
}

function readItem(row) {
  const who = row.token_name ? `${row.token_name} · ${t("role_" + row.role)}` : t("read_anonymous");
  // a webhook POST discloses whatever the subscriber answered; a read we refused disclosed nothing.
  // A POST's status 0: no answer, or the deliverer stopped before recording it (its row is written
  // before the POST: projections/webhooks/queue.py)
  const pushed = row.role === "subscriber";
  const note = pushed ? (row.status >= 200 && row.status < 300 ? null : row.status ? t("read_answered", { s: row.status }) : t("read_no_answer"))
    : row.status >= 400 ? t("read_refused", { s: row.status }) : null;
  return h("li", { "data-path": row.path, "data-status": row.status, "data-role": row.role || "", class: !pushed && row.status >= 400 ? "refused" : "" },
    h("span", { class: "h-time", text: fmtTime(row.at) }),
    h("span", { class: "r-who", text: who }),
    h("span", { class: "r-what" }, readWhat(row),
      row.persons_listed > 1 ? h("span", { class: "muted", text: ` · ${t("read_listed", { n: fmtInt(row.persons_listed) })}` }) : null,
      note ? h("span", { class: "pill " + (pushed ? "st-acknowledged" : "st-open"), text: note }) : null));
}

// ------------------------------------------------------------------ the lookup box
export function wireLookup() {
  const form = $("lookup-form"), input = $("lookup-input");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const value = input.value.trim().toUpperCase();
    if (!ID_NUMBER.test(value)) { toast(t("lookup_bad"), true); input.focus(); return; }
    if (!S.token || S.tokenState !== "ok") { toast(t("lookup_needs_token"), true); return; }
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const found = await api("/api/persons/lookup", { method: "POST", auth: true, body: { id_number: value } });
      input.value = "";  // gone from the page as soon as it served
      app.go("person", { id: found.person_id }, true);
    } catch (err) {
      toast(err.status === 404 ? t("lookup_none") : err.status === 403 ? t("lookup_forbidden")
        : err.status === 401 ? t("token_invalid") : t("lookup_bad"), true);
    } finally {
      button.disabled = false;
    }
  });
}

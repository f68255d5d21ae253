/* One alert or one warning as a caseworker reads it, in the queues and on the person page: what
 * (severity, rule, overdue mark), who (name linking to the person page, town, phone), why (the
 * reason and what clears it, in the page's language), how long it has waited, who has it, and the
 * actions.  Laid out as a row on a desk and as a card on a phone (dashboard.css: .qitem). */
import {
  clearsOf, daysBetween, fmtDays, fmtTime, h, name, personHref, reasonOf, sinceNow, t, townName,
} from "../core.js";
import { alertButtons, alertState, warningButtons } from "./actions.js";

function who(item, town, linked) {
  const label = item.name || t("no_name");
  return h("div", { class: "q-who" },
    linked ? h("a", { class: "person-name" + (item.name ? "" : " unnamed"), href: personHref(item.person_id), text: label })
      : h("span", { class: "person-name" + (item.name ? "" : " unnamed"), text: label }),
    h("div", { class: "q-town" }, townName(town),
      item.phone ? h("a", { class: "phone", href: "tel:" + item.phone.replace(/[^0-9+]/g, ""), text: item.phone }) : null));
}

function why(item) {
  const clears = clearsOf(item);
  return h("div", { class: "q-why" },
    h("div", { class: "reason", text: reasonOf(item) }),
    clears ? h("div", { class: "clears", text: t("clears", { s: clears }) }) : null);
}

/* ``opts.person``: show who it is about (the queues) or not (the person page). */
export function alertItem(a, onDone, opts) {
  const o = Object.assign({ person: true, fresh: false }, opts || {});
  const state = alertState(a);
  const resolved = state === "resolved";
  const by = [];
  if (a.assigned_to) by.push(h("div", { class: "by assigned", text: t("assigned_to", { who: a.assigned_to }) }));
  if (a.acknowledged_by && !resolved) by.push(h("div", { class: "by", text: t("acked_by", { who: a.acknowledged_by, t: fmtTime(a.acknowledged_at) }) }));
  if (resolved && a.resolved_by) by.push(h("div", { class: "by", text: `${a.resolved_by} · ${fmtTime(a.resolved_at)}` }));
  return h("article", {
    class: `qitem q-sev-${a.severity}${o.fresh ? " fresh" : ""}${a.escalated_at && !resolved ? " escalated" : ""}`,
    "data-alert-id": a.alert_id, "data-rule": a.rule, "data-severity": a.severity, "data-person": a.person_id,
    "data-event-ids": (a.event_ids || []).join(" "), "data-state": state,
  },
  h("div", { class: "q-what" },
    h("div", { class: "q-tags" },
      h("span", { class: `sev sev-${a.severity}`, text: t("sev_" + a.severity) }),
      h("span", { class: "rule", text: name("rule", a.rule) }),
      a.escalated_at && !resolved ? h("span", { class: "esc", title: t("escalated_title"), text: t("escalated_mark") }) : null),
    h("div", { class: "q-when", title: fmtTime(a.detected_at) },
      resolved ? t("resolved_after", { t: fmtTime(a.resolved_at) }) : t("waited", { d: sinceNow(a.detected_at) }),
      h("span", { class: "muted", text: fmtTime(a.detected_at) }))),
  o.person ? who(a, a.person_town || a.town, true) : null,
  why(a),
  h("div", { class: "q-state" },
    h("span", { class: "pill st-" + state, text: t("status_" + state) }),
    a.assigned_to ? null : h("div", { class: "by muted", text: t("unassigned") }),
    ...by),
  h("div", { class: "q-actions" }, ...alertButtons(a, onDone)));
}

export function warningItem(w, asOf, onDone, opts) {
  const o = Object.assign({ person: true }, opts || {});
  const overdue = daysBetween(w.since, asOf);
  const snoozed = w.snoozed;
  return h("article", {
    class: "qitem witem" + (snoozed ? " snoozed" : ""), "data-warning-id": w.warning_id || "", "data-rule": w.rule,
    "data-person": w.person_id, "data-snoozed": snoozed ? snoozed.until : "",
  },
  h("div", { class: "q-what" },
    h("div", { class: "q-tags" }, h("span", { class: "wrule wr-" + w.rule, text: name("rule", w.rule) })),
    h("div", { class: "q-when", text: t("overdue_since", { d: w.since, n: fmtDays(overdue) }) })),
  o.person ? who(w, w.town, true) : null,
  why(w),
  h("div", { class: "q-state" },
    snoozed ? h("span", { class: "pill st-snoozed", text: t("snoozed_mark", { d: snoozed.until }) })
      : h("span", { class: "pill st-open", text: t("status_open") }),
    snoozed ? h("div", { class: "by", text: t("snoozed_by", { by: snoozed.by, reason: snoozed.reason }) }) : null),
  h("div", { class: "q-actions" }, ...warningButtons(w, asOf, onDone)));
}

/* The column titles above a list of rows (desk only). */
export function itemHead(person, warnings) {
  return h("div", { class: "qitem qhead", "aria-hidden": "true" },
    h("div", { class: "q-what", text: warnings ? `${t("col_rule")} · ${t("col_since")}` : `${t("col_severity")} · ${t("col_rule")}` }),
    person ? h("div", { class: "q-who", text: t("col_person") }) : null,
    h("div", { class: "q-why", text: t("col_detail") }),
    h("div", { class: "q-state", text: t("col_status") }),
    h("div", { class: "q-actions", text: t("col_actions") }));
}

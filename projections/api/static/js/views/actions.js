/* What a caseworker does to an alert (assign, acknowledge, resolve) or a warning (snooze), shared by
 * the work queues and the person page.
 *
 * A dialog asks for what the action needs (a name, a note, a date and a reason); the API publishes
 * the action as an event on the log first and answers the updated item, which the caller draws at
 * once (``onDone``) before the next pass of the loop reads the queues again.  A 503 (the log did
 * not take it) says that nothing was recorded, so the user retries rather than believing it done.
 */
import {
  $, S, actionError, addDays, api, app, h, name, reasonOf, t, toast, todayShanghai,
} from "../core.js";

const assignees = new Set();  // names already assigned in the lists seen: offered when assigning again
export function rememberAssignees(items) {
  for (const a of items || []) if (a.assigned_to) assignees.add(a.assigned_to);
}

/* The dialog: ``fields`` [{name, label, type: text|textarea|date, required, value, min, max, list}]. */
function openDialog({ title, about, fields, submitLabel, onSubmit }) {
  const dialog = $("action-dialog");
  $("action-title").textContent = title;
  $("action-about").replaceChildren(...(about || []));
  $("action-error").textContent = "";
  const inputs = {};
  $("action-fields").replaceChildren(...fields.map((f) => {
    const attrs = { id: "action-" + f.name, name: f.name, required: f.required, value: f.value, min: f.min,
      max: f.max, maxlength: f.maxlength, list: f.list ? "action-" + f.name + "-list" : null, autocomplete: "off" };
    const input = f.type === "textarea" ? h("textarea", Object.assign(attrs, { rows: 3, value: null }))
      : h("input", Object.assign(attrs, { type: f.type || "text" }));
    if (f.type === "textarea" && f.value) input.value = f.value;
    inputs[f.name] = input;
    return h("label", { class: "field" }, h("span", { text: f.label }), input,
      f.list ? h("datalist", { id: "action-" + f.name + "-list" }, ...f.list.map((v) => h("option", { value: v }))) : null);
  }));
  const submit = $("action-submit");
  submit.textContent = submitLabel;
  submit.disabled = false;
  $("action-form").onsubmit = async (ev) => {
    ev.preventDefault();
    const values = {};
    for (const f of fields) {
      values[f.name] = inputs[f.name].value.trim();
      const bad = (f.required && !values[f.name]) ||
        (values[f.name] && ((f.min && values[f.name] < f.min) || (f.max && values[f.name] > f.max)));
      if (bad) {
        $("action-error").textContent = values[f.name] ? t("date_range", { min: f.min, max: f.max })
          : t("field_required", { f: f.label.replace(/（.*?）|\(.*?\)/g, "").trim() });
        inputs[f.name].focus();
        return;
      }
    }
    submit.disabled = true;
    submit.textContent = t("saving");
    try {
      await onSubmit(values);
      dialog.close();
    } catch (err) {
      $("action-error").textContent = actionError(err);
      submit.disabled = false;
      submit.textContent = submitLabel;
    }
  };
  $("action-cancel").onclick = () => dialog.close();
  dialog.showModal();
  const first = fields.find((f) => f.required) || fields[0];
  if (first) inputs[first.name].focus();
}

function about(item) {
  const who = item.name || item.person_id;
  return [h("div", { class: "about-who", text: `${who}${item.person_town || item.town ? " · " + (item.person_town || item.town) : ""}` }),
    h("div", { class: "about-why", text: reasonOf(item) })];
}

async function post(alert, action, body) {
  const updated = await api(`/api/alerts/${encodeURIComponent(alert.alert_id)}/${action}`, { method: "POST", auth: true, body });
  S.dirtyAlerts = true; S.dirtyPerson = true;
  app.refresh();
  return updated;
}

export async function acknowledge(alert, onDone, button) {
  if (button) button.disabled = true;
  try {
    const updated = await post(alert, "acknowledge", {});
    toast(t("acked_toast", { id: alert.name || alert.alert_id }));
    onDone(updated);
  } catch (err) {
    toast(actionError(err), true);
    if (button) button.disabled = false;
  }
}

export function assign(alert, onDone) {
  rememberAssignees([alert]);
  openDialog({
    title: t("assign_title"), about: about(alert), submitLabel: t("assign_go"),
    fields: [
      { name: "assignee", label: t("assignee_label"), required: true, maxlength: 200, value: alert.assigned_to || (S.me && S.me.name) || "",
        list: [...assignees] },
      { name: "note", label: t("note_label"), type: "textarea", maxlength: 2000 },
    ],
    onSubmit: async (v) => {
      const updated = await post(alert, "assign", { assignee: v.assignee, note: v.note || null });
      toast(t("assigned_toast", { who: v.assignee }));
      rememberAssignees([updated]);
      onDone(updated);
    },
  });
}

export function resolve(alert, onDone) {
  openDialog({
    title: t("resolve_title"), about: about(alert), submitLabel: t("resolve_go"),
    fields: [{ name: "note", label: t("resolve_note_label"), type: "textarea", required: true, maxlength: 2000 }],
    onSubmit: async (v) => {
      const updated = await post(alert, "resolve", { note: v.note });
      toast(t("resolved_toast", { id: alert.name || alert.alert_id }));
      onDone(updated);
    },
  });
}

/* Only a warning due today can be put aside (the API judges it at today): the buttons say so. */
export function snooze(warning, onDone) {
  const today = todayShanghai();
  openDialog({
    title: t("snooze_title"), about: about(warning), submitLabel: t("snooze_go"),
    fields: [
      { name: "until", label: t("snooze_until"), type: "date", required: true, value: addDays(today, 14),
        min: addDays(today, 1), max: addDays(today, 366) },
      { name: "reason", label: t("snooze_reason"), required: true, maxlength: 200,
        list: S.lang === "en" ? ["in hospital, call again after discharge", "away for work, visit agreed for next month"]
          : ["本人住院，出院后再联系", "外出务工，已约定下月走访", "已电话联系，正在办理"] },
    ],
    onSubmit: async (v) => {
      const updated = await api(`/api/warnings/${encodeURIComponent(warning.warning_id)}/snooze`, { method: "POST", auth: true,
        body: { person_id: warning.person_id, until: v.until, reason: v.reason } });
      toast(t("snoozed_toast", { d: v.until }));
      S.dirtyWarn = true; S.dirtyPerson = true;
      app.refresh();
      onDone(updated);
    },
  });
}

/* The buttons of an alert, as its state allows. */
export function alertButtons(alert, onDone) {
  const state = alert.status === "resolved" ? "resolved" : alert.acknowledged_by ? "acknowledged" : "open";
  if (state === "resolved") return [];
  return [
    h("button", { type: "button", class: "btn small ghost", "data-action": "assign", text: t("assign"),
      onclick: () => assign(alert, onDone) }),
    h("button", { type: "button", class: "btn small ghost", "data-action": "acknowledge", disabled: state !== "open",
      text: t("ack"), onclick: (ev) => acknowledge(alert, onDone, ev.currentTarget) }),
    h("button", { type: "button", class: "btn small", "data-action": "resolve", text: t("resolve"),
      onclick: () => resolve(alert, onDone) }),
  ];
}

export function warningButtons(warning, asOf, onDone) {
  if (!warning.warning_id) return [];
  const today = asOf === todayShanghai();
  return [h("button", { type: "button", class: "btn small ghost", "data-action": "snooze", disabled: !today,
    title: today ? (warning.snoozed ? t("snoozed_mark", { d: warning.snoozed.until }) : null) : t("snooze_today_only"),
    text: t("snooze"), onclick: () => snooze(warning, onDone) })];
}

export const alertState = (a) => (a.status === "resolved" ? "resolved" : a.acknowledged_by ? "acknowledged" : "open");
export const ruleName = (rule) => name("rule", rule);

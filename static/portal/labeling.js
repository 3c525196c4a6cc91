// The labeling page, keyboard first. The stage holds the reviewer's last answers, the item they
// hold and the next one, already reserved and rendered: a key shows the next item at once and the
// label is saved in the background (htmx appends the item after that). Keys: number keys label,
// j / k move, s skips with a reason, o opens the trace, h shows the user's own feedback, c comments;
// free text: ctrl+enter saves.
(() => {
  "use strict";
  const stage = document.getElementById("stage");
  if (!stage) return;
  const errorBox = document.getElementById("lab-error");
  const comment = document.getElementById("lab-comment");
  const skipForm = document.getElementById("lab-skip");
  const skipReason = document.getElementById("lab-skip-reason");
  const freeText = document.querySelector("[data-free-text]");
  const freeCategory = document.querySelector("[data-free-category]");
  const feedbackState = document.querySelector("[data-feedback-state]");
  const choices = new Map([...document.querySelectorAll(".lab-choice")].map((b) => [b.dataset.key, b]));
  let index = Number(stage.dataset.first || 0);
  let fetching = null;

  const panels = () => [...stage.querySelectorAll(".lab-item")];
  const current = () => panels()[index];
  const isItem = (p) => p && p.dataset.slot;
  const held = () => panels().filter((p) => isItem(p) && p.dataset.state === "open").map((p) => p.dataset.slot);
  const ahead = () => panels().slice(index + 1).filter((p) => isItem(p) && p.dataset.state === "open").length;
  const ended = () => panels().some((p) => p.dataset.state === "end");

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function showFeedback(shown) {
    stage.classList.toggle("show-feedback", shown);
    feedbackState.textContent = shown ? "hide" : "show";
  }

  function show(i) {
    const all = panels();
    if (!all.length) return;
    const before = all[index];
    index = Math.max(0, Math.min(i, all.length - 1));
    all.forEach((p, k) => { p.hidden = k !== index; });
    const panel = all[index];
    // h reveals the user's feedback for the item in hand only: the next one starts hidden again.
    if (panel !== before) showFeedback(false);
    for (const button of choices.values()) button.classList.remove("chosen");
    if (panel.dataset.chosen && choices.has(panel.dataset.chosen)) choices.get(panel.dataset.chosen).classList.add("chosen");
    if (freeText) freeText.value = panel.dataset.text || "";
    comment.value = panel.dataset.comment || "";
    skipForm.hidden = true;
    window.scrollTo({ top: 0 });
  }

  // One more reserved item at the end of the stage (or the "nothing left" panel).
  function preload() {
    if (fetching) return fetching;
    if (ended()) return Promise.resolve();
    const url = stage.dataset.nextUrl + "?held=" + held().join(",");
    fetching = htmx.ajax("GET", url, { source: stage, target: "#stage", swap: "beforeend" })
      .finally(() => { fetching = null; });
    return fetching;
  }

  function refreshProgress() {
    const progress = document.getElementById("lab-progress");
    if (progress) htmx.trigger(progress, "refresh");
  }

  // Save an answer for the current panel and show the next item at once; the answer's response
  // carries one more item when fewer than two wait ahead. A refused answer brings its item back.
  function answer(url, values, badge) {
    const panel = current();
    if (!isItem(panel) || panel.dataset.state === "saving") return;
    const more = panel.dataset.state === "open" && ahead() < 2 && !ended() && !fetching;
    panel.dataset.state = "saving";
    const slot = panel.querySelector("[data-answer]");
    slot.innerHTML = "";
    const tag = document.createElement("span");
    tag.className = "badge " + (badge.kind || "");
    tag.textContent = badge.text;
    slot.appendChild(tag);
    const body = { ...values, comment: comment.value, held: held().join(","), more: more ? "1" : "0" };
    showError("");
    const request = htmx.ajax("POST", url, { source: panel, target: "#stage", swap: "beforeend", values: body });
    if (more) fetching = request.finally(() => { fetching = null; });
    panel.dataset.comment = comment.value;
    const next = panels().indexOf(panel) + 1;
    show(next);
    // Still on the answered item (nothing was preloaded yet): move on once the next item arrives.
    // Not when the reviewer had moved on and came back to it (k) while it was saving: they stay.
    const waiting = panels()[index] === panel;
    const catchUp = () => { if (panels()[index] === panel && panels().length > next) show(next); };
    const settled = () => {
      if (panel.dataset.state !== "saving") return;  // refused: the error handler brought it back
      panel.dataset.state = values.reason !== undefined ? "skipped" : "done";
      refreshProgress();
      if (waiting && panels()[index] === panel) {
        if (panels().length > next) catchUp();
        else preload().then(catchUp);
      } else if (ahead() < 1) preload();
    };
    request.then(settled, settled);
  }

  document.body.addEventListener("htmx:responseError", (event) => {
    const panel = event.detail.elt && event.detail.elt.closest && event.detail.elt.closest(".lab-item");
    if (!panel || !stage.contains(panel)) return;
    panel.dataset.state = "open";
    panel.dataset.chosen = "";
    panel.querySelector("[data-answer]").innerHTML = "";
    showError("Not saved: " + (event.detail.xhr.responseText || event.detail.xhr.statusText));
    show(panels().indexOf(panel));
  });
  document.body.addEventListener("htmx:sendError", () => showError("Not saved: the server cannot be reached."));

  function label(key) {
    const button = choices.get(key);
    const panel = current();
    if (!button || !isItem(panel) || panel.dataset.state === "skipped" || panel.dataset.state === "saving") return;
    panel.dataset.chosen = key;
    const values = button.dataset.category !== undefined ? { category: button.dataset.category } : { value: button.dataset.value };
    const kind = button.classList.contains("good") ? "good" : button.classList.contains("bad") ? "bad" : "good";
    answer(panel.dataset.labelUrl, values, { text: "your label: " + button.textContent.replace(key, "").trim(), kind });
  }

  function saveText(field, input) {
    const panel = current();
    const text = input.value.trim();
    if (!isItem(panel) || !text) return;
    panel.dataset.text = text;
    input.blur();
    answer(panel.dataset.labelUrl, { [field]: text }, { text: "your label: " + text.slice(0, 40), kind: "good" });
    input.value = "";
  }

  function move(step) {
    const next = index + step;
    if (next >= panels().length) {
      if (!ended()) preload().then(() => show(next));
      return;
    }
    show(next);
    if (step > 0 && ahead() < 1) preload();
  }

  skipForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const panel = current();
    const reason = skipReason.value.trim();
    if (!isItem(panel) || !reason || panel.dataset.state !== "open") return;
    skipReason.value = "";
    skipReason.blur();
    answer(panel.dataset.skipUrl, { reason }, { text: "skipped: " + reason.slice(0, 40), kind: "" });
  });

  for (const [key, button] of choices) button.addEventListener("click", () => label(key));
  document.querySelector("[data-submit-text]")?.addEventListener("click", () => saveText("text", freeText));

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target.matches && target.matches("input, textarea, select");
    if (typing) {
      if (event.key === "Escape") { target.blur(); skipForm.hidden = true; }
      else if (target === freeText && event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); saveText("text", freeText); }
      else if (target === freeCategory && event.key === "Enter") { event.preventDefault(); saveText("category", freeCategory); }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    if (choices.has(key)) { event.preventDefault(); label(key); }
    else if (key === "j") move(1);
    else if (key === "k") move(-1);
    else if (key === "s") {
      const panel = current();
      if (isItem(panel) && panel.dataset.state === "open") { event.preventDefault(); skipForm.hidden = false; skipReason.focus(); }
    } else if (key === "o") {
      const panel = current();
      if (isItem(panel)) window.open(panel.dataset.traceUrl, "_blank", "noopener");
    } else if (key === "h") {
      showFeedback(!stage.classList.contains("show-feedback"));
    } else if (key === "c") { event.preventDefault(); comment.focus(); }
    else if (freeText && key === "Enter") { event.preventDefault(); freeText.focus(); }
  });

  show(index);
  if (!panels().length) preload().then(() => show(0));
})();

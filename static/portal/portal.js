// Small progressive enhancements; every page works without them.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const target = document.getElementById(button.dataset.copy);
  if (!target) return;
  navigator.clipboard.writeText(target.textContent.trim()).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
});

// Trace filters: the metadata value input is named after the key typed beside it (metadata.<key>).
document.addEventListener("input", (event) => {
  if (!event.target.matches("[data-metadata-key]")) return;
  const value = event.target.form.querySelector("[data-metadata-value]");
  const key = event.target.value.trim();
  if (key) value.name = "metadata." + key;
  else value.removeAttribute("name");
});

// Forms whose action is hard to undo ask first (data-confirm="the question").
document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

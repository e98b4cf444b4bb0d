// Clicking a legend entry hides or shows its series in that chart.
document.addEventListener("click", (event) => {
  const key = event.target.closest(".legend .key");
  if (!key) return;
  const series = key.closest("figure").querySelectorAll(".series[data-series]");
  for (const s of series) if (s.dataset.series === key.dataset.legend) s.classList.toggle("off");
  key.classList.toggle("off");
});

// Auto-refresh: a page whose window ends now ([data-refresh], in seconds)
// reloads itself, unless its reader turned the toggle off (remembered for
// the tab). It waits while the reader types in a form or the tab is hidden.
(() => {
  const box = document.querySelector("[data-refresh]");
  if (!box) return;
  const button = box.querySelector("button");
  const key = "kuroko.autoRefresh";
  let active = true;
  try { active = sessionStorage.getItem(key) !== "off"; } catch { /* storage blocked: on */ }
  let timer = 0;
  const due = () => {
    const typing = document.activeElement && document.activeElement.closest("form");
    if (document.hidden || typing) timer = setTimeout(due, 5000);
    else location.reload();
  };
  const show = () => {
    clearTimeout(timer);
    button.textContent = `auto-refresh: ${active ? "on" : "off"}`;
    button.setAttribute("aria-pressed", String(active));
    box.classList.toggle("off", !active);
    if (active) {
      const seconds = Number(box.dataset.refresh) || 60;
      box.dataset.due = String(Date.now() + seconds * 1000);
      timer = setTimeout(due, seconds * 1000);
    } else {
      delete box.dataset.due;
    }
  };
  button.addEventListener("click", () => {
    active = !active;
    try { sessionStorage.setItem(key, active ? "on" : "off"); } catch { /* not remembered */ }
    show();
  });
  show();
})();

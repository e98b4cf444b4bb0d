// Clicking a legend entry hides or shows its series in that chart.
document.addEventListener("click", (event) => {
  const key = event.target.closest(".legend .key");
  if (!key) return;
  const series = key.closest("figure").querySelectorAll(".series[data-series]");
  for (const s of series) if (s.dataset.series === key.dataset.legend) s.classList.toggle("off");
  key.classList.toggle("off");
});

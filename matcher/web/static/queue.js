// Keyboard shortcuts for the queue, and the count of selected proposals.
// j / k: next / previous proposal; x: select it; a: approve it; o or Enter: open it.
(function () {
  "use strict";
  const cards = Array.from(document.querySelectorAll("article[data-proposal]"));
  const count = document.getElementById("selected-count");
  const all = document.getElementById("select-all");
  let current = -1;

  function picks() { return Array.from(document.querySelectorAll("input.pick")); }
  function updateCount() {
    if (count) { count.textContent = String(picks().filter((p) => p.checked).length); }
  }
  function focusCard(index) {
    if (!cards.length) { return; }
    current = Math.max(0, Math.min(index, cards.length - 1));
    cards.forEach((c, i) => c.classList.toggle("current", i === current));
    cards[current].focus({ preventScroll: true });
    cards[current].scrollIntoView({ block: "nearest" });
  }
  function typing(target) {
    return target instanceof HTMLElement &&
      (target.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName) &&
        !(target instanceof HTMLInputElement && target.type === "checkbox"));
  }

  document.addEventListener("change", (event) => {
    if (event.target === all) { picks().forEach((p) => { p.checked = all.checked; }); }
    updateCount();
  });
  cards.forEach((card, index) => card.addEventListener("focusin", () => {
    current = index;
    cards.forEach((c, i) => c.classList.toggle("current", i === current));
  }));
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
    const card = cards[current];
    switch (event.key) {
      case "j": focusCard(current + 1); break;
      case "k": focusCard(current - 1); break;
      case "x":
        if (card) { const pick = card.querySelector("input.pick"); pick.checked = !pick.checked; updateCount(); }
        break;
      case "a":
        if (card) { card.querySelector("button.approve").click(); }
        break;
      case "o": case "Enter":
        if (card && event.target === card) { card.querySelector("a.open").click(); }
        break;
      default: return;
    }
    event.preventDefault();
  });
  updateCount();
})();

// sessionmem's web page: keyboard help only (everything else is htmx and plain links).
// "/" focuses the search box; Escape leaves it. No inline script anywhere (the page's CSP).
document.addEventListener("keydown", function (event) {
  var box = document.getElementById("q");
  var typing = event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement ||
    event.target instanceof HTMLSelectElement;
  if (event.key === "/" && box && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
    event.preventDefault();
    box.focus();
  } else if (event.key === "Escape" && event.target === box) {
    box.blur();
  }
});

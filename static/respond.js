/* The survey page's side of the embed. Inside the shop's iframe it tells the host page
   (the loader) to close (Esc; the loader's dialog has the close button), that the survey is completed, and how
   tall its content is; after each htmx step it moves focus to the new step. */
(function () {
  "use strict";
  var framed = window.parent !== window;
  var completed = false;
  var lastHeight = 0;

  function tell(message) {
    // "*": the messages carry nothing private, and only the shop's allowed origins may
    // frame this page (its Content-Security-Policy frame-ancestors).
    if (framed) window.parent.postMessage(message, "*");
  }

  function reportHeight() {
    var main = document.querySelector("main");
    var height = main ? Math.ceil(main.getBoundingClientRect().height) : 0;
    if (height && height !== lastHeight) {
      lastHeight = height;
      tell({ patchwork: "height", value: height });
    }
  }

  function checkCompleted() {
    if (!completed && document.querySelector("[data-completed]")) {
      completed = true;
      tell({ patchwork: "completed" });
    }
  }

  function focusStep() {
    var step = document.getElementById("step");
    if (!step) return;
    var target = step.querySelector("[aria-invalid=true], [data-focus]") ||
      step.querySelector("input:checked, input:not([type=hidden]), textarea");
    if (target) target.focus();
  }

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") tell({ patchwork: "close" });
  });
  document.body.addEventListener("htmx:afterSwap", function () {
    checkCompleted();
    // htmx takes the new step's form over only when the swap settles (20 ms later); a key
    // pressed in between would submit it as a plain form. Take it over now, before focus
    // lets anyone press a key in it.
    var step = document.getElementById("step");
    if (step && window.htmx) window.htmx.process(step);
    focusStep();
    reportHeight();
  });
  if ("ResizeObserver" in window) {
    new ResizeObserver(reportHeight).observe(document.body);
  }
  window.addEventListener("load", reportHeight);
  checkCompleted();
  reportHeight();
  // A step reached by a plain form submission (no JavaScript yet, or a key pressed in the
  // moment before htmx took the new step's form over) loads as a whole page: focus its
  // question as an htmx step would.
  if (/[?&]step=/.test(window.location.search)) focusStep();
})();

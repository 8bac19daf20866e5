// htmx after the first paint: fetched once the page has loaded, so on a slow network it never
// competes with the page itself. Every page works as plain HTML before it arrives, or if it never does.
(function (me) {
  var src = me && me.getAttribute("data-src");
  function go() {
    var s = document.createElement("script");
    s.src = src;
    document.head.appendChild(s);
  }
  if (!src) return;
  if (document.readyState === "complete") go();
  else window.addEventListener("load", go);
})(document.currentScript);

// htmx after the first paint: asked for once the page has loaded and a frame has been painted,
// so on a slow network it never competes with the page. Every page works as plain HTML before
// it arrives, or if it never does.
(function (me) {
  var src = me && me.getAttribute("data-src");
  function go() {
    var s = document.createElement("script");
    s.src = src;
    document.head.appendChild(s);
  }
  function later() {
    if (window.requestAnimationFrame) requestAnimationFrame(function () { setTimeout(go, 0); });
    else setTimeout(go, 50);
  }
  if (!src) return;
  if (document.readyState === "complete") later();
  else window.addEventListener("load", later);
})(document.currentScript);

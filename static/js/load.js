(function (me) {
  var src = me && me.getAttribute("data-src");
  function go() {
    var s = document.createElement("script");
    s.src = src;
    document.head.appendChild(s);
  }
  function later() {
    if (window.requestAnimationFrame) requestAnimationFrame(function () { setTimeout(go, 500); });
    else setTimeout(go, 500);
  }
  if (!src) return;
  if (document.readyState === "complete") later();
  else window.addEventListener("load", later);
})(document.currentScript);

// WeChat's pay sheet for a JSAPI order, inside WeChat only (the order page names this file only
// there). WeChat injects WeixinJSBridge and says so with WeixinJSBridgeReady; the parameters were
// signed by the site. After "ok" the order page's status, which polls, shows the money arriving.
(function (e) {
  if (!e) return;
  var b = e.querySelector("[data-pay]");
  function a(n) { return e.getAttribute("data-" + n); }
  function show(s) {
    var p = e.querySelectorAll("[data-state]");
    for (var i = 0; i < p.length; i++) p[i].hidden = p[i].getAttribute("data-state") !== s;
  }
  function pay() {
    b.disabled = true;
    window.WeixinJSBridge.invoke("getBrandWCPayRequest", {
      appId: a("app-id"), timeStamp: a("time-stamp"), nonceStr: a("nonce-str"),
      "package": a("package"), signType: a("sign-type"), paySign: a("pay-sign")
    }, function (r) {
      var ok = r && r.err_msg === "get_brand_wcpay_request:ok";
      show(ok ? "paying" : "failed");
      b.hidden = ok;
      b.disabled = ok;
    });
  }
  function ready() { b.addEventListener("click", pay); pay(); }
  if (window.WeixinJSBridge && window.WeixinJSBridge.invoke) ready();
  else document.addEventListener("WeixinJSBridgeReady", ready, false);
})(document.getElementById("wechat-jsapi"));

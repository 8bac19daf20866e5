"""The starter FAQ that `flask faq seed` adds to an empty site, in Chinese and English.

Traditional Chinese readers are shown the zh_Hans entries converted (faq/traditional.py), as
they are shown every entry staff write later: there are no zh_Hant rows to seed or to keep in
step.

This is data, not interface text: staff edit the rows afterwards, so it is not in the message
catalog. Answers are Markdown (rendered through ``content.render_markdown``). Keep the two
languages saying the same things, in the same order.
"""

from __future__ import annotations

from heyon_site.faq.services import StarterEntry

STARTER: dict[str, tuple[StarterEntry, ...]] = {
    "zh_Hans": (
        StarterEntry(
            "充值",
            "为什么充值失败？",
            "最常见的原因有：\n\n"
            "- 卡号或密码输错（请核对卡上印的卡号和密码）；\n"
            "- 支付过程中网络中断；\n"
            "- 在支付宝或微信支付的页面上没有完成支付。\n\n"
            "核对后重新充值即可。如果钱已扣除但订单显示失败，请带上**订单号**联系客服。",
        ),
        StarterEntry(
            "充值",
            "可以使用哪些支付方式？",
            "充值页面会列出当前可用的支付方式，例如**支付宝**和**微信支付**。"
            "部分支付方式有最低充值金额，会在您支付之前显示。\n\n"
            "请只通过本官方网站或官方支付平台充值，不要把卡号和密码告诉任何人。",
        ),
        StarterEntry(
            "充值",
            "充值多久到账？",
            "通常几分钟内到账，订单页面会自动更新。\n\n"
            "如果 **30 分钟**后仍未到账，请带上订单号联系客服。"
            "订单号显示在订单页面和收据上。",
        ),
        StarterEntry(
            "充值",
            "可以退款吗？",
            "不可以。充值到账后不能退款，请在支付前核对卡号和金额。",
        ),
        StarterEntry(
            "充值",
            "怎样确认钱已经到账？",
            "订单页面显示“已到账”后，可以在“余额”页面输入卡号和密码查看余额和最近的充值记录。",
        ),
        StarterEntry(
            "您的卡",
            "忘记了卡号或密码怎么办？",
            "为了您的安全，本网站无法找回卡号或密码。请联系客服，联系方式在每个页面的底部。",
        ),
        StarterEntry(
            "您的卡",
            "网站提示尝试次数过多，怎么办？",
            "多次输错密码后，此卡会暂停一段时间，之后每错一次等待时间都会变长；"
            "连续输错很多次后，此卡会被锁定，只能由客服解锁。\n\n"
            "请稍等后仔细输入密码；如果不确定密码，请联系客服，不要反复尝试。",
        ),
    ),
    "en": (
        StarterEntry(
            "Recharging",
            "Why did my recharge fail?",
            "The most common reasons are:\n\n"
            "- a mistyped card number or password (check the ones printed on your card);\n"
            "- a network connection that dropped during payment;\n"
            "- a payment that was not completed on the Alipay or WeChat Pay page.\n\n"
            "Check them and recharge again. If money was taken but the order says it failed, "
            "contact support with your **order number**.",
        ),
        StarterEntry(
            "Recharging",
            "Which payment methods can I use?",
            "The recharge page lists the methods available now, such as **Alipay** and **WeChat Pay**. "
            "Some methods have a minimum amount, which is shown before you pay.\n\n"
            "Please recharge only through this official site or the official payment providers, "
            "and never give your card number and password to anyone.",
        ),
        StarterEntry(
            "Recharging",
            "How long does it take for the money to arrive?",
            "Usually a few minutes; the order page updates by itself.\n\n"
            "If the money has not arrived after **30 minutes**, contact support with your order number. "
            "You find it on the order page and on the receipt.",
        ),
        StarterEntry(
            "Recharging",
            "Can I get a refund?",
            "No. A recharge that has been credited cannot be refunded, so please check the card number "
            "and the amount before you pay.",
        ),
        StarterEntry(
            "Recharging",
            "How do I check that the money has arrived?",
            "Once the order page says \u201cCredited\u201d, open the Balance page and enter your card number "
            "and password: it shows the balance and your latest recharges.",
        ),
        StarterEntry(
            "Your card",
            "I lost my card number or password",
            "For your safety they cannot be recovered on this site. Please contact support; "
            "the contacts are at the bottom of every page.",
        ),
        StarterEntry(
            "Your card",
            "The site says I made too many attempts",
            "After several wrong passwords a card is paused for a while, and the wait grows with each "
            "further mistake; after many wrong passwords in a row the card is locked until support "
            "unlocks it.\n\n"
            "Wait, then type the password carefully. If you are not sure of it, contact support instead "
            "of trying again.",
        ),
    ),
}

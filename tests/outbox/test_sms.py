"""The SMS channels (heyon_site/outbox/sms.py) against local fakes of Alibaba Cloud SMS and
Twilio (tests/provider_kits): the signed request, what each answer becomes, and the settings."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from heyon_site.config import MissingSetting
from heyon_site.outbox import sms
from heyon_site.outbox.channels import Outgoing, PermanentFailure, TemporaryFailure
from tests.provider_kits import aliyun_sms, twilio
from tests.provider_kits.aliyun_sms import AliyunSmsFake
from tests.provider_kits.twilio import TwilioFake

PHONE = "+8613800138000"
PARAMS = {"amount": "100.00", "balance": "105.00", "last4": "1234", "order_no": "2601010000000001"}
TEXT = "Heyon card **** 1234: ¥100.00 has been credited (order 2601010000000001). Balance now ¥105.00."


def outgoing(recipient: str = PHONE, key: str = "order:7:credited:sms", template: str = "recharge_credited",
             params: dict[str, str] | None = None) -> Outgoing:
    return Outgoing(key, recipient, template, params or PARAMS, "en", "Heyon card: recharge credited", TEXT)


def aliyun(fake: AliyunSmsFake) -> sms.AliyunSms:
    made = sms.from_config(aliyun_sms.settings(fake.base_url))
    assert isinstance(made, sms.AliyunSms)
    return made


def twilio_channel(fake: TwilioFake, **extra: str) -> sms.TwilioSms:
    made = sms.from_config({**twilio.settings(fake.base_url), **extra})
    assert isinstance(made, sms.TwilioSms)
    return made


# ------------------------------------------------------------------ Alibaba Cloud


@pytest.mark.parametrize(("params", "secret", "signature"), [
    # The worked examples of Alibaba Cloud's documentation: the RPC signature page (ECS
    # DescribeRegions) and the SMS API's own (SendSms, with a Chinese sign name and JSON).
    ({"Timestamp": "2016-02-23T12:46:24Z", "Format": "XML", "AccessKeyId": "testid", "Action": "DescribeRegions",
      "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
      "Version": "2014-05-26", "SignatureVersion": "1.0"}, "testsecret", "OLeaidS1JvxuMvnyHOwuJ+uX5qY="),
    ({"AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123", "PhoneNumbers": "15300000001",
      "RegionId": "cn-hangzhou", "SignName": "阿里云短信测试专用", "SignatureMethod": "HMAC-SHA1",
      "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466", "SignatureVersion": "1.0",
      "TemplateCode": "SMS_71390007", "TemplateParam": '{"customer":"test"}', "Timestamp": "2017-07-12T02:42:19Z",
      "Version": "2017-05-25"}, "testSecret", "zJDF+Lrzhj/ThnlvIToysFRq6t4="),
])
def test_the_signature_matches_the_documented_examples(params: dict[str, str], secret: str, signature: str) -> None:
    assert sms.aliyun_signature(params, secret) == signature
    assert aliyun_sms.reference_signature(params, secret) == signature  # the fake checks the same way


def test_percent_encoding_follows_alibaba_clouds_rules_not_form_encoding() -> None:
    assert sms.percent_encode("a b*c~d/e+f") == "a%20b%2Ac~d%2Fe%2Bf"
    assert sms.percent_encode("禾") == "%E7%A6%BE"
    assert sms.percent_encode("-_.") == "-_."


def test_sendsms_carries_the_template_code_the_params_and_the_outbox_key(aliyun_fake: AliyunSmsFake) -> None:
    aliyun(aliyun_fake).send(outgoing())
    [sent] = aliyun_fake.sent
    assert sent["PhoneNumbers"] == PHONE
    assert sent["SignName"] == aliyun_sms.SIGN_NAME
    assert sent["TemplateCode"] == "SMS_480001"
    assert json.loads(sent["TemplateParam"]) == PARAMS
    assert sent["OutId"] == "order:7:credited:sms"
    assert (sent["Action"], sent["Version"], sent["Format"]) == ("SendSms", "2017-05-25", "JSON")


def test_each_request_has_a_fresh_nonce_and_a_replayed_one_is_refused(aliyun_fake: AliyunSmsFake) -> None:
    channel = aliyun(aliyun_fake)
    message = outgoing()
    params = channel.request_params(message)
    again = requests.get(f"{aliyun_fake.base_url}/?{urlencode(params)}", timeout=5)
    assert again.json()["Code"] == "OK"
    replay = requests.get(f"{aliyun_fake.base_url}/?{urlencode(params)}", timeout=5)
    assert (replay.status_code, replay.json()["Code"]) == (400, "SignatureNonceUsed")
    channel.send(message)
    channel.send(message)
    assert len({r["SignatureNonce"] for r in aliyun_fake.requests}) == 3


def test_a_changed_parameter_breaks_the_signature(aliyun_fake: AliyunSmsFake) -> None:
    params = aliyun(aliyun_fake).request_params(outgoing())
    params["PhoneNumbers"] = "+8613900139000"
    answer = requests.get(f"{aliyun_fake.base_url}/?{urlencode(params)}", timeout=5)
    assert (answer.status_code, answer.json()["Code"]) == (400, "SignatureDoesNotMatch")
    assert aliyun_fake.sent == []


def test_a_clock_more_than_15_minutes_off_is_refused_and_tried_again_later(aliyun_fake: AliyunSmsFake) -> None:
    aliyun_fake.clock = datetime.now(UTC) + timedelta(minutes=16)
    with pytest.raises(TemporaryFailure, match="InvalidTimeStamp.Expired"):
        aliyun(aliyun_fake).send(outgoing())
    aliyun_fake.clock = datetime.now(UTC) + timedelta(minutes=14)
    aliyun(aliyun_fake).send(outgoing())
    assert len(aliyun_fake.sent) == 1


@pytest.mark.parametrize("code", ["isv.BUSINESS_LIMIT_CONTROL", "Throttling.User", "ServiceUnavailable",
                                  "isv.DAY_LIMIT_CONTROL", "isp.SYSTEM_ERROR"])
def test_throttling_and_outages_are_tried_again(aliyun_fake: AliyunSmsFake, code: str) -> None:
    aliyun_fake.answer_next = [code]
    with pytest.raises(TemporaryFailure, match=code.replace(".", r"\.")):
        aliyun(aliyun_fake).send(outgoing())
    assert aliyun_fake.sent == []


def test_an_answer_that_is_not_json_is_tried_again(aliyun_fake: AliyunSmsFake) -> None:
    aliyun_fake.fail_next = 1  # 503 "unavailable", as a proxy in front of it might answer
    with pytest.raises(TemporaryFailure, match="HTTP 503"):
        aliyun(aliyun_fake).send(outgoing())


@pytest.mark.parametrize(("message", "code"), [
    (outgoing("+86 1380013800"), "isv.MOBILE_NUMBER_ILLEGAL"),
    (outgoing(params={"last4": "1234"}), "isv.TEMPLATE_MISSING_PARAMETERS"),
])
def test_a_wrong_number_or_template_is_given_up(aliyun_fake: AliyunSmsFake, message: Outgoing, code: str) -> None:
    with pytest.raises(PermanentFailure, match=code.replace(".", r"\.")) as refused:
        aliyun(aliyun_fake).send(message)
    assert "1380013800" not in str(refused.value)  # the fake repeats the number; it is masked
    assert aliyun_fake.sent == []


def test_an_unregistered_template_code_is_given_up(aliyun_fake: AliyunSmsFake) -> None:
    settings = {**aliyun_sms.settings(aliyun_fake.base_url), "HEYON_SMS_TEMPLATE_LOW_BALANCE": "SMS_000000"}
    with pytest.raises(PermanentFailure, match=r"isv\.SMS_TEMPLATE_ILLEGAL"):
        sms.AliyunSms.from_config(settings).send(outgoing(template="low_balance", params={"last4": "1", "balance": "2"}))


def test_a_template_without_a_code_is_given_up_before_asking(aliyun_fake: AliyunSmsFake) -> None:
    with pytest.raises(PermanentFailure, match="no Alibaba Cloud template code for birthday"):
        aliyun(aliyun_fake).send(outgoing(template="birthday"))
    assert aliyun_fake.requests == []


def test_wrong_keys_are_tried_again_until_someone_fixes_them(aliyun_fake: AliyunSmsFake) -> None:
    settings = {**aliyun_sms.settings(aliyun_fake.base_url), "HEYON_ALIYUN_ACCESS_KEY_SECRET": "not-the-secret"}
    with pytest.raises(TemporaryFailure, match="SignatureDoesNotMatch"):
        sms.AliyunSms.from_config(settings).send(outgoing())


# ------------------------------------------------------------------ Twilio


def test_twilio_gets_the_text_from_to_and_the_idempotency_token(twilio_fake: TwilioFake) -> None:
    twilio_channel(twilio_fake).send(outgoing())
    [(token, form)] = twilio_fake.requests
    assert token == "order:7:credited:sms"
    assert form == {"To": PHONE, "From": twilio.FROM, "Body": TEXT}
    assert [m["to"] for m in twilio_fake.sent] == [PHONE]


def test_a_messaging_service_picks_the_sender_itself(twilio_fake: TwilioFake) -> None:
    twilio_channel(twilio_fake, HEYON_TWILIO_FROM="", HEYON_TWILIO_MESSAGING_SERVICE_SID="MG" + "0" * 32).send(outgoing())
    [(_, form)] = twilio_fake.requests
    assert form["MessagingServiceSid"] == "MG" + "0" * 32 and "From" not in form


def test_the_same_token_twice_reaches_the_phone_once(twilio_fake: TwilioFake) -> None:
    channel = twilio_channel(twilio_fake)
    channel.send(outgoing())
    channel.send(outgoing())
    channel.send(outgoing(key="order:8:credited:sms"))
    assert twilio_fake.tokens() == ["order:7:credited:sms", "order:7:credited:sms", "order:8:credited:sms"]
    assert len(twilio_fake.sent) == 2


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (500, 20500), (503, 20503), (401, 20003)])
def test_rate_limits_outages_and_credentials_are_tried_again(twilio_fake: TwilioFake, status: int, code: int) -> None:
    twilio_fake.answer_next = [(status, code)]
    with pytest.raises(TemporaryFailure, match=f"twilio {status} error {code}"):
        twilio_channel(twilio_fake).send(outgoing())
    assert twilio_fake.sent == []


def test_a_wrong_auth_token_is_refused_by_the_fake(twilio_fake: TwilioFake) -> None:
    with pytest.raises(TemporaryFailure, match="twilio 401 error 20003"):
        twilio_channel(twilio_fake, HEYON_TWILIO_AUTH_TOKEN="0" * 32).send(outgoing())
    assert twilio_fake.requests == [] and twilio_fake.sent == []


def test_an_invalid_to_number_is_given_up_without_the_number_in_the_error(twilio_fake: TwilioFake) -> None:
    with pytest.raises(PermanentFailure, match="twilio 400 error 21211") as refused:
        twilio_channel(twilio_fake).send(outgoing("13800138000"))
    assert "13800138000" not in str(refused.value) and "****8000" in str(refused.value)


def test_twilio_unreachable_is_tried_again(twilio_fake: TwilioFake) -> None:
    channel = twilio_channel(twilio_fake, HEYON_TWILIO_API_BASE="http://127.0.0.1:9")  # discard: nothing listens
    with pytest.raises(TemporaryFailure, match="twilio unreachable"):
        channel.send(outgoing())


# ------------------------------------------------------------------ choosing a provider


def test_log_is_the_default_and_means_no_sms_channel() -> None:
    assert sms.from_config({}) is None
    assert sms.from_config({"HEYON_SMS_PROVIDER": "log"}) is None


def test_an_unknown_provider_stops_the_worker() -> None:
    with pytest.raises(ValueError, match="HEYON_SMS_PROVIDER must be one of log, aliyun, twilio"):
        sms.from_config({"HEYON_SMS_PROVIDER": "pigeon"})


@pytest.mark.parametrize(("provider", "missing"), [
    ("aliyun", "HEYON_ALIYUN_ACCESS_KEY_SECRET"), ("aliyun", "HEYON_SMS_TEMPLATE_LOW_BALANCE"),
    ("aliyun", "HEYON_ALIYUN_SMS_SIGN_NAME"), ("twilio", "HEYON_TWILIO_AUTH_TOKEN"), ("twilio", "HEYON_TWILIO_FROM"),
])
def test_a_missing_setting_is_named(provider: str, missing: str) -> None:
    settings = aliyun_sms.settings("https://sms.test") if provider == "aliyun" else twilio.settings("https://sms.test")
    settings.pop(missing)
    with pytest.raises(MissingSetting, match=missing) as stopped:
        sms.from_config(settings)
    assert all(value not in str(stopped.value) for value in settings.values() if len(value) > 16)


def test_keys_may_come_from_files(tmp_path: Path, aliyun_fake: AliyunSmsFake, twilio_fake: TwilioFake) -> None:
    (tmp_path / "aliyun").write_text(aliyun_sms.ACCESS_KEY_SECRET + "\n")
    (tmp_path / "twilio").write_text(twilio.AUTH_TOKEN + "\n")
    settings = aliyun_sms.settings(aliyun_fake.base_url)
    settings.pop("HEYON_ALIYUN_ACCESS_KEY_SECRET")
    sms.from_config({**settings, "HEYON_ALIYUN_ACCESS_KEY_SECRET_FILE": str(tmp_path / "aliyun")}).send(outgoing())
    settings = twilio.settings(twilio_fake.base_url)
    settings.pop("HEYON_TWILIO_AUTH_TOKEN")
    sms.from_config({**settings, "HEYON_TWILIO_AUTH_TOKEN_FILE": str(tmp_path / "twilio")}).send(outgoing())
    assert (len(aliyun_fake.sent), len(twilio_fake.sent)) == (1, 1)


def test_the_defaults_are_the_real_endpoints_and_the_settings_repr_hides_the_keys() -> None:
    channel = sms.from_config({**aliyun_sms.settings(""), "HEYON_ALIYUN_SMS_ENDPOINT": ""})
    assert isinstance(channel, sms.AliyunSms) and channel.settings.endpoint == "https://dysmsapi.aliyuncs.com"
    assert aliyun_sms.ACCESS_KEY_SECRET not in repr(channel.settings)
    channel2 = sms.from_config({**twilio.settings(""), "HEYON_TWILIO_API_BASE": ""})
    assert isinstance(channel2, sms.TwilioSms) and channel2.settings.api_base == "https://api.twilio.com"
    assert twilio.AUTH_TOKEN not in repr(channel2.settings)


def test_the_settings_come_from_the_environment() -> None:
    from heyon_site.config import from_environment

    env = {"HEYON_SMS_PROVIDER": " Twilio ", "HEYON_SMTP_URL": "smtp://mail.example.com", "HEYON_SMTP_FROM": "a@b.c",
           "HEYON_SMTP_CA_FILE": "/etc/ca.pem", "HEYON_SMTP_PASSWORD_FILE": "/run/pw",
           "HEYON_SMS_TEMPLATE_LOW_BALANCE": "SMS_1", "HEYON_ALIYUN_ACCESS_KEY_SECRET_FILE": "/run/k",
           "HEYON_ALIYUN_SMS_ENDPOINT": "https://x.test", "HEYON_TWILIO_API_BASE": "https://y.test",
           "HEYON_TWILIO_MESSAGING_SERVICE_SID": "MG1", "UNRELATED": "x"}
    read = from_environment(env)
    assert read["HEYON_SMS_PROVIDER"] == "twilio"
    assert {k: read[k] for k in env if k.startswith("HEYON_") and k != "HEYON_SMS_PROVIDER"} == {
        k: v for k, v in env.items() if k.startswith("HEYON_") and k != "HEYON_SMS_PROVIDER"}
    assert "UNRELATED" not in read
    assert from_environment({})["HEYON_SMS_PROVIDER"] == "log"

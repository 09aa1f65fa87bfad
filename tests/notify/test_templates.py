"""Message texts: the 2.0 result format exactly, English variants, one SMS where possible, no ID."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest

from tongcha.notify import templates
from tongcha.notify.templates import (
    inquiry_result,
    request_done,
    request_overdue,
    segments,
    verification_code,
)

ALIBABA_ZH = [("闲鱼", 1), ("淘宝", 1), ("钉钉", 0)]
ALIBABA_EN = [("Xianyu", 1), ("Taobao", 1), ("DingTalk", 0)]
KINDS = ["inquiry", "detail", "unbind", "dispute", "history", "label_clearance"]


def test_inquiry_result_is_the_2_0_format_exactly() -> None:
    text = inquiry_result(as_of=date(2026, 11, 23), tail4="5551", counts=ALIBABA_ZH)
    assert (
        text == "截至11月23日，您名下尾号为5551的电话卡所注册的互联网账号如下：闲鱼账号1个、淘宝账号1个、钉钉账号0个。"
    )


def test_inquiry_result_in_english() -> None:
    text = inquiry_result(as_of=date(2026, 11, 23), tail4="5551", counts=ALIBABA_EN, lang="en")
    assert (
        text
        == "As of 23 November, the phone card ending 5551 under your name has registered: Xianyu 1, Taobao 1, DingTalk 0."
    )


def test_inquiry_result_writes_dates_without_leading_zeros() -> None:
    text = inquiry_result(as_of=date(2027, 1, 5), tail4="0007", counts=[("百度", 2)])
    assert text.startswith("截至1月5日，您名下尾号为0007的电话卡")
    assert text.endswith("百度账号2个。")
    assert inquiry_result(as_of=date(2027, 1, 5), tail4="0007", counts=[("Baidu", 2)], lang="en").startswith(
        "As of 5 January,"
    )


def test_inquiry_result_with_no_apps_says_none_were_found() -> None:
    assert (
        inquiry_result(as_of=date(2026, 11, 23), tail4="5551", counts=[])
        == "截至11月23日，您名下尾号为5551的电话卡未查询到注册的互联网账号。"
    )
    assert inquiry_result(as_of=date(2026, 11, 23), tail4="5551", counts=[], lang="en").endswith(
        "has no registered internet accounts."
    )


def test_inquiry_result_says_how_many_platforms_could_not_answer() -> None:
    # A platform that failed or was suspended was left out in silence, which reads as
    # "no accounts there".
    assert inquiry_result(as_of=date(2026, 11, 23), tail4="5551", counts=ALIBABA_ZH, unanswered=2) == (
        "截至11月23日，您名下尾号为5551的电话卡所注册的互联网账号如下：闲鱼账号1个、淘宝账号1个、钉钉账号0个。"
        "另有2家平台未能答复。"
    )
    assert inquiry_result(as_of=date(2026, 11, 23), tail4="5551", counts=ALIBABA_EN, unanswered=1, lang="en") == (
        "As of 23 November, the phone card ending 5551 under your name has registered: Xianyu 1, Taobao 1, DingTalk 0."
        " 1 platform could not answer."
    )
    assert inquiry_result(as_of=date(2026, 11, 23), tail4="5551", counts=ALIBABA_EN, unanswered=3, lang="en").endswith(
        " 3 platforms could not answer."
    )


def test_inquiry_result_with_no_answer_at_all_does_not_say_there_are_no_accounts() -> None:
    assert (
        inquiry_result(as_of=date(2026, 11, 23), tail4="5551", counts=[], unanswered=8)
        == "截至11月23日，您名下尾号为5551的电话卡暂未查询到注册的互联网账号，8家平台未能答复。"
    )
    en = inquiry_result(as_of=date(2026, 11, 23), tail4="5551", counts=[], unanswered=8, lang="en")
    assert en.endswith("has no registered internet accounts found so far; 8 platforms could not answer.")


def test_inquiry_result_refuses_a_negative_number_of_silent_platforms() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        inquiry_result(as_of=date(2026, 11, 23), tail4="5551", counts=ALIBABA_ZH, unanswered=-1)


@pytest.mark.parametrize(
    ("tail4", "counts", "reason"),
    [
        ("555", ALIBABA_ZH, "last four digits"),
        ("55a1", ALIBABA_ZH, "last four digits"),
        ("５５５１", ALIBABA_ZH, "last four digits"),  # full-width digits are digits to str.isdigit
        ("5551", [("闲鱼", -1)], "cannot be negative"),
        ("5551", [(" ", 1)], "needs a name"),
    ],
)
def test_inquiry_result_refuses_a_bad_tail_or_count(tail4: str, counts: list[tuple[str, int]], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        inquiry_result(as_of=date(2026, 11, 23), tail4=tail4, counts=counts)


def test_verification_code_in_chinese_and_english() -> None:
    assert verification_code("123456", minutes=5) == "【通查】您的验证码是123456，5分钟内有效。请勿告诉他人。"
    assert verification_code("123456", minutes=5, lang="en") == (
        "[Tongcha] Your verification code is 123456. It is valid for 5 minutes. Do not share it with anyone."
    )
    assert "valid for 1 minute." in verification_code("123456", minutes=1, lang="en")


@pytest.mark.parametrize("code", ["12345a", "123", "123456789", "１２３４５６", ""])
def test_verification_code_must_be_4_to_8_ascii_digits(code: str) -> None:
    with pytest.raises(ValueError, match="4 to 8 digits"):
        verification_code(code, minutes=5)


@pytest.mark.parametrize("kind", KINDS)
def test_request_done_names_the_kind_the_request_and_the_link(kind: str) -> None:
    zh = request_done(kind=kind, request_id="R7K2Q9", url="https://tongcha.example/r/R7K2Q9")
    assert zh.startswith("【通查】您的") and "（编号R7K2Q9）已办理完成" in zh
    assert zh.endswith("详见：https://tongcha.example/r/R7K2Q9")
    en = request_done(kind=kind, request_id="R7K2Q9", url="https://tongcha.example/r/R7K2Q9", lang="en")
    assert en.startswith("[Tongcha] Your ") and "request R7K2Q9 is complete. See https://tongcha.example/r/R7K2Q9" in en


def test_request_done_without_a_link_and_for_each_kind() -> None:
    assert (
        request_done(kind="unbind", request_id="R7K2Q9", url=None)
        == "【通查】您的解绑申请（编号R7K2Q9）已办理完成，请登录通查查看结果。"
    )
    assert (
        request_done(kind="label_clearance", request_id="R7K2Q9", url=None, lang="en")
        == "[Tongcha] Your label clearing request R7K2Q9 is complete. Sign in to Tongcha to see the result."
    )
    # An unknown kind still tells the citizen their request is done.
    assert (
        request_done(kind="something-new", request_id="R7K2Q9", url=None)
        == "【通查】您的申请（编号R7K2Q9）已办理完成，请登录通查查看结果。"
    )


def test_request_overdue_in_chinese_and_english() -> None:
    zh = request_overdue(kind="dispute", request_id="R7K2Q9")
    assert zh == "【通查】您的异议账号处理申请（编号R7K2Q9）有平台逾期未答复，我们正在催办，办结后短信通知您。"
    en = request_overdue(kind="dispute", request_id="R7K2Q9", lang="en")
    assert en.startswith("[Tongcha] Your disputed account request R7K2Q9 is overdue")


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: request_done(kind="unbind", request_id="R 1", url=None), "one word"),
        (lambda: request_done(kind="unbind", request_id="", url=None), "one word"),
        (lambda: request_done(kind="unbind", request_id="R1", url="javascript:alert(1)"), "http"),
        (lambda: verification_code("123456", minutes=0), "at least one minute"),
        (lambda: verification_code("123456", minutes=5, lang="fr"), "unknown language"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_are_refused(call: Callable[[], str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        call()


@pytest.mark.parametrize("id_shaped", ["11010519491231002X", "110105194912310021", "110105491231002"])
def test_nothing_shaped_like_an_id_number_reaches_a_text(id_shaped: str) -> None:
    with pytest.raises(ValueError, match="ID number"):
        request_done(kind="unbind", request_id=id_shaped, url=None)
    with pytest.raises(ValueError, match="ID number"):
        request_done(kind="unbind", request_id="R1", url=f"https://tongcha.example/r?id={id_shaped}")
    with pytest.raises(ValueError, match="ID number"):
        inquiry_result(as_of=date(2026, 11, 23), tail4="5551", counts=[(id_shaped, 1)])


def test_the_templates_take_no_name_or_id_number() -> None:
    import inspect

    for function in (verification_code, inquiry_result, request_done, request_overdue):
        parameters = set(inspect.signature(function).parameters)
        assert not parameters & {"name", "id_number", "id_last6", "holder"}, function.__name__


# ----- one SMS where possible ---------------------------------------------------------


def test_segments_counts_gsm7_and_ucs2_parts() -> None:
    assert segments("a" * 160) == 1 and segments("a" * 161) == 2 and segments("a" * 306) == 2
    assert segments("[" * 80) == 1 and segments("[" * 81) == 2  # extension characters take two
    assert segments("通" * 70) == 1 and segments("通" * 71) == 2 and segments("通" * 134) == 2
    assert segments("a" * 69 + "😀") == 2  # outside the BMP: two UTF-16 units, and UCS-2


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_short_texts_fit_in_one_sms(lang: templates.Lang) -> None:
    assert segments(verification_code("12345678", minutes=10, lang=lang)) == 1
    for kind in KINDS:
        assert segments(request_done(kind=kind, request_id="R7K2Q9XW", url=None, lang=lang)) == 1
        assert segments(request_done(kind=kind, request_id="R7K2Q9XW", url="https://tc.cn/r/R7K2Q9XW", lang=lang)) == 1


def test_a_one_app_inquiry_result_fits_in_one_sms() -> None:
    assert segments(inquiry_result(as_of=date(2026, 11, 23), tail4="5551", counts=[("闲鱼", 1)])) == 1
    # also when it says that some platforms could not answer
    langs: tuple[templates.Lang, ...] = ("zh", "en")
    for lang in langs:
        one = [("闲鱼" if lang == "zh" else "Xianyu", 1)]
        for counts in (one, []):
            text = inquiry_result(as_of=date(2026, 12, 31), tail4="5551", counts=counts, unanswered=12, lang=lang)
            assert segments(text) == 1, text

"""The texts citizens receive, in Chinese (default) and English.

Every text is built from codes, dates, counts, app names and request ids only: no
function here takes a name or an ID number, and ``_refuse_identity`` stops anything
shaped like an ID number from reaching a message. Texts are kept within one SMS where
the content allows (70 characters in Chinese, 160 in plain Latin); ``segments`` says how
many parts a text takes. The 一证通查 2.0 result, one line per app, runs longer: that
is the format citizens know.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Literal

Lang = Literal["zh", "en"]

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

# What citizens call each request kind (requests.models.RequestKind values).
_KIND_NAMES: dict[str, tuple[str, str]] = {
    "inquiry": ("一证通查", "account inquiry"),
    "detail": ("账号明细查询", "account details"),
    "unbind": ("解绑", "unbinding"),
    "dispute": ("异议账号处理", "disputed account"),
    "history": ("历史号码查询", "former number"),
    "label_clearance": ("号码标记清除", "label clearing"),
}

# A resident ID number is 18 characters (17 digits and a digit or X), 15 in the old
# form. Nothing legitimate in a message is that long a run of digits.
_ID_SHAPED = re.compile(r"\d{14,}[\dXx]")

# GSM 03.38: the basic set costs one septet, the extension set two; anything else
# sends the whole message as UCS-2.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


def segments(text: str) -> int:
    """How many SMS parts ``text`` takes (GSM-7: 160, or 153 per part; UCS-2: 70, or 67)."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text):
        units, single, multi = sum(2 if c in _GSM_EXTENDED else 1 for c in text), 160, 153
    else:
        # UTF-16 code units: a character outside the BMP takes two.
        units, single, multi = len(text.encode("utf-16-le")) // 2, 70, 67
    if units <= single:
        return 1
    return -(-units // multi)


def _refuse_identity(text: str) -> str:
    if _ID_SHAPED.search(text):
        raise ValueError("a message must never carry an ID number (or anything shaped like one)")
    return text


def _check_lang(lang: str) -> None:
    if lang not in ("zh", "en"):
        raise ValueError(f"unknown language {lang!r}: 'zh' or 'en'")


def verification_code(code: str, *, minutes: int, lang: Lang = "zh") -> str:
    """The message that carries a verification code, valid for ``minutes``."""
    # 【通查】您的验证码是123456，5分钟内有效。请勿告诉他人。
    _check_lang(lang)
    if not (code.isascii() and code.isdigit() and 4 <= len(code) <= 8):
        raise ValueError("a verification code is 4 to 8 digits")
    if minutes < 1:
        raise ValueError("a code is valid for at least one minute")
    if lang == "zh":
        return f"【通查】您的验证码是{code}，{minutes}分钟内有效。请勿告诉他人。"
    unit = "minute" if minutes == 1 else "minutes"
    return f"[Tongcha] Your verification code is {code}. It is valid for {minutes} {unit}. Do not share it with anyone."


def inquiry_result(
    *, as_of: date, tail4: str, counts: list[tuple[str, int]], unanswered: int = 0, lang: Lang = "zh"
) -> str:
    """The 一证通查 2.0 result for one number, its apps in the order given.

    ``counts`` are (app name as citizens know it, in ``lang``; number of accounts).
    ``unanswered`` is how many platforms could not answer (failed, or given up while
    suspended): the text says so, or their silence would read as "no accounts there".
    """
    # 截至11月23日，您名下尾号为5551的电话卡所注册的互联网账号如下：闲鱼账号1个、淘宝账号1个、钉钉账号0个。
    _check_lang(lang)
    if not (tail4.isascii() and tail4.isdigit() and len(tail4) == 4):
        raise ValueError("tail4 is the last four digits of the number")
    for name, count in counts:
        if not name.strip():
            raise ValueError("an app needs a name")
        if count < 0:
            raise ValueError(f"{name}: a count cannot be negative")
    if unanswered < 0:
        raise ValueError("the platforms that could not answer cannot be negative")
    if lang == "zh":
        head = f"截至{as_of.month}月{as_of.day}日，您名下尾号为{tail4}的电话卡"
        if not counts and unanswered:
            return _refuse_identity(f"{head}暂未查询到注册的互联网账号，{unanswered}家平台未能答复。")
        if not counts:
            return _refuse_identity(f"{head}未查询到注册的互联网账号。")
        listed = "、".join(f"{name}账号{count}个" for name, count in counts)
        missing = f"另有{unanswered}家平台未能答复。" if unanswered else ""
        return _refuse_identity(f"{head}所注册的互联网账号如下：{listed}。{missing}")
    head = f"As of {as_of.day} {_MONTHS[as_of.month - 1]}, the phone card ending {tail4} under your name"
    could_not = f"{unanswered} platform{'' if unanswered == 1 else 's'} could not answer."
    if not counts and unanswered:
        return _refuse_identity(f"{head} has no registered internet accounts found so far; {could_not}")
    if not counts:
        return _refuse_identity(f"{head} has no registered internet accounts.")
    listed = ", ".join(f"{name} {count}" for name, count in counts)
    missing = f" {could_not}" if unanswered else ""
    return _refuse_identity(f"{head} has registered: {listed}.{missing}")


def _kind_name(kind: str, lang: Lang) -> str:
    # An unknown kind still gets its message: the citizen is owed the news more than the
    # wording; the generic text just leaves the kind out.
    names = _KIND_NAMES.get(kind)
    if names is None:
        return ""
    return names[0] if lang == "zh" else f"{names[1]} "


def _check_request(request_id: str, url: str | None) -> None:
    if not request_id or any(c.isspace() for c in request_id):
        raise ValueError("a request id is one word")
    if url is not None and not url.startswith(("https://", "http://")):
        raise ValueError("the link must be an http(s) URL")


def request_done(*, kind: str, request_id: str, url: str | None, lang: Lang = "zh") -> str:
    """A request other than the inquiry is complete: where to see the result.

    The link, if any, ends the text, so that no punctuation sticks to it on the phone.
    """
    # 【通查】您的解绑申请（编号R7K2Q9）已办理完成，详见：https://…
    _check_lang(lang)
    _check_request(request_id, url)
    name = _kind_name(kind, lang)
    if lang == "zh":
        where = f"详见：{url}" if url else "请登录通查查看结果。"
        return _refuse_identity(f"【通查】您的{name}申请（编号{request_id}）已办理完成，{where}")
    where = f"See {url}" if url else "Sign in to Tongcha to see the result."
    return _refuse_identity(f"[Tongcha] Your {name}request {request_id} is complete. {where}")


def request_overdue(*, kind: str, request_id: str, lang: Lang = "zh") -> str:
    """A request is past its due time because some platforms have not answered."""
    _check_lang(lang)
    _check_request(request_id, None)
    name = _kind_name(kind, lang)
    if lang == "zh":
        return _refuse_identity(
            f"【通查】您的{name}申请（编号{request_id}）有平台逾期未答复，我们正在催办，办结后短信通知您。"
        )
    return _refuse_identity(
        f"[Tongcha] Your {name}request {request_id} is overdue: some platforms have not answered yet. "
        "We will text you when it is complete."
    )

"""The citizen's pages: verify, see my numbers, ask, and follow my requests.

Plain HTML from the server with one small script (``static/citizen.js``) that calls the
JSON API with the access token kept in ``sessionStorage``. The pages themselves hold
nothing personal: a name or an ID number is typed into a form, sent in a POST body, and
cleared; it never reaches a URL, a log or the browser's storage.
"""

from __future__ import annotations

import json
from functools import cache
from html import escape
from importlib import resources
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from tongcha.kit.errors import NotFound
from tongcha.platforms.models import Platform, PlatformApp
from tongcha.platforms.service import callable_platforms
from tongcha.web.deps import HubDep, SessionDep
from tongcha.web.devinbox import inbox_enabled
from tongcha.web.state import HubState

router = APIRouter(include_in_schema=False)

_ASSETS = {"citizen.js": "text/javascript; charset=utf-8", "citizen.css": "text/css; charset=utf-8"}
_HEADERS = {
    # The pages load only what the hub serves; tokens never leave for another origin.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


@cache
def _asset(name: str) -> bytes:
    return (resources.files("tongcha.web") / "static" / name).read_bytes()


@router.get("/static/{name}")
def asset(name: str) -> Response:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFound("no such file")
    return Response(_asset(name), media_type=media_type, headers={"Cache-Control": "no-cache"})


def _zone_label(zone: str) -> str:
    return "北京时间 Beijing time" if zone in ("Asia/Shanghai", "Asia/Chongqing", "PRC") else zone


def _zone_note(zone: str) -> str:
    return "时间均为北京时间。Times are Beijing time." if _zone_label(zone) != zone else f"Times are in {zone}."


def _both(zh: str | None, en: str) -> str:
    return f"{zh} {en}" if zh and zh != en else en


def _config_json(config: dict[str, Any]) -> str:
    # Inside <script type="application/json">: nothing may close the element early.
    return json.dumps(config, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")


def _page(hub: HubState, *, page: str, title: str, body: str, config: dict[str, Any] | None = None) -> HTMLResponse:
    inbox = inbox_enabled(hub)
    zone_label = _zone_label(hub.settings.timezone)
    content = body.replace("{zone_note}", escape(_zone_note(hub.settings.timezone)))
    settings = {
        "page": page,
        "zone": hub.settings.timezone,
        "zone_label": zone_label,
        "inbox": inbox,
        **(config or {}),
    }
    body_class = ' class="with-inbox"' if inbox else ""
    panel = (
        """<aside id="inbox" data-testid="inbox" class="phone">
<h2>📱 模拟手机 Demo phone</h2>
<p class="muted" data-testid="inbox-number">还没有号码 No number yet</p>
<ol id="inbox-messages" data-testid="inbox-messages"></ol>
<p class="muted small">开发环境：短信不会真正发出，显示在这里。Dev hub: SMS are not sent, they show up here.</p>
</aside>"""
        if inbox
        else ""
    )
    html = f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · Tongcha 通查</title><link rel="stylesheet" href="/static/citizen.css"></head>
<body data-page="{escape(page)}"{body_class}>
<header><a class="brand" href="/">Tongcha 通查</a>
<nav><a href="/me" data-testid="nav-verify">验证 Verify</a>
<a href="/me/numbers" data-testid="nav-numbers">我的号码 My numbers</a>
<a href="/me/requests" data-testid="nav-requests">我的申请 My requests</a>
<button type="button" id="signout" data-testid="signout" hidden>退出 Sign out</button></nav></header>
<main>
<div id="message" data-testid="message" role="alert" hidden></div>
{content}
</main>
{panel}
<script id="tongcha-config" type="application/json">{_config_json(settings)}</script>
<script src="/static/citizen.js" defer></script>
</body></html>"""
    return HTMLResponse(html, headers=_HEADERS)


_VERIFY = """<h1>验证身份 Verify who you are</h1>
<p class="muted">Tongcha checks your details against the number's current holder in the carriers' ledger.
If they match, a six-digit code is sent to that phone by SMS. The page answers the same either way.
核对信息与号码当前机主一致时，验证码将以短信发送到该号码。</p>
<section id="signed-in" data-testid="signed-in" hidden>
<p>已验证 You are verified: <strong data-testid="signed-in-number"></strong>.
<a href="/me/numbers">我的号码 My numbers →</a></p></section>
<form id="verify-form" data-testid="verify-form" method="post" autocomplete="off">
<label>手机号 Phone number
<input name="phone" data-testid="verify-phone" inputmode="tel" placeholder="+8613800138000" required></label>
<fieldset><legend>用什么核对 Verify with</legend>
<label class="inline"><input type="radio" name="mode" value="full" data-testid="verify-mode-full" checked>
姓名 + 身份证号 Name and ID number</label>
<label class="inline"><input type="radio" name="mode" value="tail" data-testid="verify-mode-tail">
身份证号后六位 Last six characters of the ID number</label></fieldset>
<div data-mode="full">
<label>姓名 Name <input name="name" data-testid="verify-name" autocomplete="off" maxlength="100"></label>
<label>身份证号 ID number
<input name="id_number" data-testid="verify-id" autocomplete="off" spellcheck="false" maxlength="18"></label>
</div>
<div data-mode="tail" hidden>
<label>身份证号后六位 Last six
<input name="id_last6" data-testid="verify-last6" autocomplete="off" spellcheck="false" maxlength="6"></label>
</div>
<button type="submit" data-testid="verify-submit">获取验证码 Send me a code</button>
</form>
<form id="code-form" data-testid="code-form" method="post" autocomplete="off" hidden>
<p data-testid="code-sent"></p>
<label>短信验证码 Code from the SMS
<input name="code" data-testid="code-input" inputmode="numeric" maxlength="6" autocomplete="one-time-code"></label>
<button type="submit" data-testid="code-submit">验证 Verify</button>
<button type="button" class="secondary" data-testid="verify-restart">重新开始 Start again</button>
</form>"""

_NUMBERS = """<h1>我的号码 My numbers</h1>
<p class="muted">Every number under your ID number in the carriers' ledger: the ones you hold now, and
the ones you held before. 您名下现在和曾经持有的号码。</p>
<section class="actions">
<button type="button" data-testid="inquiry-button">一证通查 Inquiry: accounts on all my numbers</button>
<span class="muted">Asks every platform how many accounts sit on each number you hold now, counted from
the day your tenure began.</span>
</section>
<table data-testid="numbers"><thead><tr><th>号码 Number</th><th>运营商 Carrier</th>
<th>持有期 Tenure</th><th>操作 Actions</th></tr></thead>
<tbody id="numbers-body"></tbody></table>
<p data-testid="numbers-empty" hidden>您名下没有号码。No number is recorded under your ID.</p>"""

_REQUESTS = """<h1>我的申请 My requests</h1>
<table data-testid="requests"><thead><tr><th>申请 Request</th><th>状态 State</th><th>提交 Asked</th>
<th>办结时限 Due by</th><th></th></tr></thead><tbody id="requests-body"></tbody></table>
<p class="muted small">{zone_note}</p>
<p data-testid="requests-empty" hidden>还没有申请。No requests yet.
<a href="/me/numbers">我的号码 My numbers →</a></p>"""

_REQUEST = """<h1 data-testid="request-kind">申请 Request</h1>
<dl class="facts">
<dt>状态 State</dt><dd data-testid="request-state">…</dd>
<dt>提交 Asked</dt><dd data-testid="request-created"></dd>
<dt>办结时限 Due by</dt><dd data-testid="request-due"></dd>
<dt>号码 Number</dt><dd data-testid="request-number"></dd>
<dt>等待 Waiting for</dt><dd data-testid="request-pending"></dd>
</dl>
<p data-testid="request-overdue" class="overdue" hidden></p>
<div data-testid="request-summary" class="summary"></div>
<table data-testid="platforms"><thead><tr><th>平台 Platform</th><th>进度 Progress</th>
<th>时限 Due by</th><th>结果 Result</th></tr></thead><tbody id="platforms-body"></tbody></table>
<p class="muted small">{zone_note}</p>
<p class="muted small" data-testid="request-refresh">本页自动刷新 This page refreshes itself while the request is open.</p>
<p><a href="/me/requests">← 我的申请 My requests</a></p>"""


def _catalogue(session: Session) -> dict[str, Any]:
    """What the pages name platforms and apps by, and which platforms take requests."""
    platforms = session.scalars(select(Platform)).all()
    names = {p.code: _both(p.name_zh, p.name) for p in platforms}
    by_id = {p.id: p.code for p in platforms}
    # A unified enterprise counts under its own code.
    apps: dict[str, dict[str, str]] = {p.code: {p.code: names[p.code]} for p in platforms}
    for app in session.scalars(select(PlatformApp)):
        code = by_id.get(app.platform_id)
        if code is not None:
            apps[code][app.code] = _both(app.name_zh, app.name_en)
    takes = [{"code": p.code, "name": names[p.code]} for p in callable_platforms(session)]
    return {"platform_names": names, "apps": apps, "platforms": takes}


@router.get("/me", response_class=HTMLResponse)
def verify_page(hub: HubDep) -> HTMLResponse:
    return _page(hub, page="verify", title="验证 Verify", body=_VERIFY)


@router.get("/me/numbers", response_class=HTMLResponse)
def numbers_page(hub: HubDep, session: SessionDep) -> HTMLResponse:
    return _page(hub, page="numbers", title="我的号码 My numbers", body=_NUMBERS, config=_catalogue(session))


@router.get("/me/requests", response_class=HTMLResponse)
def requests_page(hub: HubDep) -> HTMLResponse:
    return _page(hub, page="requests", title="我的申请 My requests", body=_REQUESTS)


@router.get("/me/requests/{request_id}", response_class=HTMLResponse)
def request_page(request_id: str, hub: HubDep, session: SessionDep) -> HTMLResponse:
    config = {"request_id": request_id, **_catalogue(session)}
    return _page(hub, page="request", title="申请 Request", body=_REQUEST, config=config)

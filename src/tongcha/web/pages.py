"""Server-rendered pages: the hub's front page, and the citizen's pages beside it."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from tongcha.ledger import repository as ledger_repo
from tongcha.web import citizen
from tongcha.web.deps import HubDep, SessionDep

router = APIRouter(include_in_schema=False)
router.include_router(citizen.router)

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:56rem;margin:2rem auto;padding:0 1rem;color:#1d2330}
h1{margin-bottom:.2rem} table{border-collapse:collapse} td,th{padding:.3rem .8rem;border-bottom:1px solid #ddd;text-align:left}
code{background:#f3f4f6;padding:.1rem .3rem;border-radius:3px} .muted{color:#666}
"""


@router.get("/", response_class=HTMLResponse)
def home(session: SessionDep, state: HubDep) -> str:
    carriers = ledger_repo.numbers_by_carrier(session)
    numbers, tenures, checks = ledger_repo.ledger_totals(session)
    rows = "".join(
        f"<tr><td>{escape(code)}</td><td>{escape(name)}</td><td data-testid='carrier-numbers'>{count:,}</td></tr>"
        for code, name, count in carriers
    )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Tongcha</title>
<style>{_STYLE}</style></head><body>
<h1>Tongcha 通查</h1>
<p class="muted">An open clearing-house for phone-number account bindings.</p>
<p><a href="/me" data-testid="citizen-link">我的号码与账号 My numbers and accounts →</a>
<span class="muted">verify with your phone, see which apps hold accounts on your numbers, unbind what a previous holder left.</span></p>
<h2>The number ledger</h2>
<p><span data-testid="numbers">{numbers:,}</span> numbers, {tenures:,} tenures, {checks:,} reassignment checks answered.</p>
<table><thead><tr><th>carrier</th><th>name</th><th>numbers served</th></tr></thead><tbody>{rows}</tbody></table>
<h2>Ask the ledger</h2>
<form id="check" onsubmit="return check(event)">
<label>number <input name="number" value="" placeholder="+8613800138000" required></label>
<label>since <input name="since" type="date" required></label>
<label>platform credential <input name="token" type="password" required></label>
<button type="submit">Check</button></form>
<pre id="answer" data-testid="answer"></pre>
<p class="muted">API: <a href="/docs">/docs</a>, <a href="/openapi.json">/openapi.json</a></p>
<script>
async function check(ev) {{
  ev.preventDefault();
  const f = new FormData(ev.target);
  const r = await fetch(`/platform/v1/reassignments/${{encodeURIComponent(f.get('number'))}}?since=${{f.get('since')}}`,
    {{headers: {{Authorization: `Bearer ${{f.get('token')}}`}}}});
  document.getElementById('answer').textContent = JSON.stringify(await r.json(), null, 2);
  return false;
}}
</script>
</body></html>"""

// The citizen's pages: a little vanilla JS on the hub's JSON API (no build step).
//
// The access token and the verified phone number live in sessionStorage (gone when the
// tab closes), and so does a verification waiting for its code (its id, phone and
// expiry), so that a reload between the two steps returns to the code. A name or an ID number is only ever in a form field and a POST body: it
// is never stored, never put in a URL, never logged, and the form is cleared after use.
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("tongcha-config").textContent);
  const store = window.sessionStorage;
  const KEYS = {
    token: "tongcha.token",
    expires: "tongcha.token_expires",
    phone: "tongcha.phone",
    pending: "tongcha.verification",
  };

  // ----- small helpers --------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "testid") node.dataset.testid = value;
      else if (key === "className") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function $(testid) {
    return document.querySelector(`[data-testid="${testid}"]`);
  }

  function e164(raw) {
    const text = String(raw || "").replace(/[\s-]/g, "");
    if (/^1\d{10}$/.test(text)) return "+86" + text;
    if (/^86\d{11}$/.test(text)) return "+" + text;
    return text;
  }

  function mask(number) {
    return number && number.length > 10 ? number.slice(0, 6) + "****" + number.slice(-4) : number || "";
  }

  const timeFormat = new Intl.DateTimeFormat("zh-CN", {
    timeZone: config.zone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    hour12: false,
  });

  // Times in the hub's zone (Beijing time); the pages say so once, the facts each time.
  function when(iso, withZone) {
    if (!iso) return "—";
    const text = timeFormat.format(new Date(iso));
    return withZone ? `${text} (${config.zone_label})` : text;
  }

  function day(iso) {
    return iso || "";
  }

  // ----- messages ---------------------------------------------------------------------

  function say(text, kind, link) {
    const box = document.getElementById("message");
    box.replaceChildren(text);
    if (link) box.append(" ", el("a", { href: link.href, testid: "message-link" }, link.text));
    box.className = kind || "error";
    box.dataset.kind = kind || "error";
    box.hidden = false;
  }

  function quiet() {
    const box = document.getElementById("message");
    box.hidden = true;
    box.replaceChildren();
  }

  class ApiFailure extends Error {
    constructor(status, error) {
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || "";
      this.details = error.details || [];
    }
  }

  // What a citizen reads for each failure: what happened and what to do about it.
  function explain(failure) {
    if (!(failure instanceof ApiFailure)) {
      return { text: "无法连接通查 Cannot reach the hub; check the connection and try again." };
    }
    const left = failure.details.find((d) => d && typeof d.tries_left === "number");
    if (failure.status === 400 && left) {
      return { text: `验证码错误，还可以再试 ${left.tries_left} 次。Wrong code: ${left.tries_left} tries left.` };
    }
    if (failure.status === 401) {
      signOutLocally();
      return {
        text: "登录已失效（15分钟），请重新验证。Your session has ended; verify again.",
        link: { href: "/me", text: "验证 Verify →" },
      };
    }
    if (failure.status === 403) {
      // The hub says which rule applies (held now, held before, none held).
      const why = failure.message.charAt(0).toUpperCase() + failure.message.slice(1);
      return { text: `不能办理：您只能对名下的号码操作。${why}.` };
    }
    if (failure.status === 404) return { text: `找不到 Not found: ${failure.message}` };
    if (failure.status === 429) return { text: `请求过于频繁 Too many tries: ${failure.message}` };
    if (failure.status >= 500) {
      return { text: `通查出错了，请稍后再试。The hub failed; try again later. (${failure.message})` };
    }
    return { text: `${failure.message}` };
  }

  function fail(failure) {
    const { text, link } = explain(failure);
    say(text, "error", link);
  }

  // ----- the API ----------------------------------------------------------------------

  function token() {
    const value = store.getItem(KEYS.token);
    const expires = Number(store.getItem(KEYS.expires) || 0);
    if (!value) return null;
    if (expires && Date.now() >= expires) {
      signOutLocally();
      return null;
    }
    return value;
  }

  function signOutLocally() {
    store.removeItem(KEYS.token);
    store.removeItem(KEYS.expires);
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const bearer = token();
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
    if (response.status === 204) return null;
    let payload = null;
    try {
      payload = await response.json();
    } catch (_) {
      payload = null;
    }
    if (!response.ok) {
      throw new ApiFailure(response.status, (payload && payload.error) || {});
    }
    return payload;
  }

  function needToken() {
    if (token()) return true;
    say("请先验证身份。Verify who you are first.", "info", { href: "/me", text: "验证 Verify →" });
    return false;
  }

  // ----- labels -----------------------------------------------------------------------

  const KINDS = {
    inquiry: "一证通查 Inquiry",
    detail: "账号明细 Accounts at one enterprise",
    unbind: "一键解绑 Unbind the previous holder",
    dispute: "异议账号 Dispute an account",
    history: "历史号码 History of a former number",
  };
  const STATES = { open: "处理中 in progress", completed: "已办结 completed" };
  const TASK_STATES = {
    in_flight: "查询中 asking",
    pending: "等待重试 waiting to retry",
    awaiting_callback: "等待平台答复 waiting for the platform",
    done: "已完成 done",
    failed: "失败 failed",
  };
  const ACTIONS = { unbind: "解绑 unbind", freeze: "冻结 freeze", cancel: "注销 cancel" };

  function platformName(code) {
    return (config.platform_names && config.platform_names[code]) || code;
  }

  function appName(platform, app) {
    const apps = (config.apps && config.apps[platform]) || {};
    return apps[app] || app;
  }

  // ----- the phone inbox (dev hubs only) ----------------------------------------------

  let inboxNumber = null;
  let inboxTimer = null;

  function watchInbox(number) {
    if (!config.inbox) return;
    inboxNumber = number;
    $("inbox-number").textContent = number ? `${number} 的短信 Messages to ${number}` : "还没有号码 No number yet";
    if (inboxTimer === null) {
      inboxTimer = window.setInterval(pollInbox, 1000);
    }
    pollInbox();
  }

  async function pollInbox() {
    if (!inboxNumber) return;
    let messages;
    try {
      messages = await api("GET", `/dev/inbox/${encodeURIComponent(inboxNumber)}`);
    } catch (_) {
      return; // the phone panel is a convenience: it never raises an alarm
    }
    const list = document.getElementById("inbox-messages");
    list.replaceChildren(
      ...messages.map((m) =>
        el(
          "li",
          { testid: "inbox-message" },
          el("time", { className: "muted small" }, when(m.sent_at)),
          el("p", {}, m.text),
        ),
      ),
    );
  }

  // ----- verify: details, then the code -----------------------------------------------

  // The verification waiting for its code, or null; one past its expiry is dropped and
  // reported as { expired: true }. The expiry is counted on this browser's clock from
  // the hub's expires_in (the two clocks need not agree); the hub has the last word: an
  // expired or used code it refuses drops the stored one too.
  function pendingVerification() {
    let pending = null;
    try {
      pending = JSON.parse(store.getItem(KEYS.pending) || "null");
    } catch (_) {
      pending = null;
    }
    if (!pending || typeof pending.id !== "string" || typeof pending.phone !== "string") {
      store.removeItem(KEYS.pending);
      return null;
    }
    if (!(Date.now() < Number(pending.deadline))) {
      store.removeItem(KEYS.pending);
      return { expired: true };
    }
    return pending;
  }

  function verifyPage() {
    const form = document.getElementById("verify-form");
    const codeForm = document.getElementById("code-form");
    let verificationId = null;
    let verificationPhone = null;
    let expiryTimer = null;

    const signedIn = token();
    if (signedIn) {
      $("signed-in").hidden = false;
      $("signed-in-number").textContent = mask(store.getItem(KEYS.phone));
      watchInbox(store.getItem(KEYS.phone));
    }

    function showMode() {
      const mode = form.elements.mode.value;
      for (const part of form.querySelectorAll("[data-mode]")) part.hidden = part.dataset.mode !== mode;
    }
    for (const radio of form.elements.mode) radio.addEventListener("change", showMode);
    showMode();

    function clearIdentity() {
      form.elements.name.value = "";
      form.elements.id_number.value = "";
      form.elements.id_last6.value = "";
    }

    function restart() {
      forget();
      codeForm.elements.code.value = "";
      codeForm.hidden = true;
      form.hidden = false;
    }

    function forget() {
      verificationId = null;
      verificationPhone = null;
      store.removeItem(KEYS.pending);
      if (expiryTimer !== null) window.clearTimeout(expiryTimer);
      expiryTimer = null;
    }

    function expired() {
      restart();
      say("验证码已过期，请重新开始。The code has expired; send your details again.", "info");
    }

    // The code step, for a verification just started or one a reload found waiting.
    function askForCode(pending) {
      verificationId = pending.id;
      verificationPhone = pending.phone;
      form.hidden = true;
      codeForm.hidden = false;
      $("code-sent").textContent =
        `如果信息与 ${mask(pending.phone)} 的机主一致，验证码已发往该号码，${when(pending.expires_at, true)} 前有效。` +
        ` If the details match the holder of ${mask(pending.phone)}, a code is on its way to it;` +
        ` it works until ${when(pending.expires_at, true)}. No code? Check the details and start again` +
        ` after ${when(pending.resend_after, true)}.`;
      const left = Math.min(Number(pending.deadline) - Date.now(), 2 ** 31 - 1);
      if (expiryTimer !== null) window.clearTimeout(expiryTimer);
      expiryTimer = window.setTimeout(expired, Math.max(0, left));
      codeForm.elements.code.focus();
      watchInbox(pending.phone);
    }

    const waiting = pendingVerification();
    if (waiting && waiting.expired) {
      say("验证码已过期，请重新开始。The code has expired; send your details again.", "info");
    } else if (waiting) {
      askForCode(waiting);
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      quiet();
      const phone = e164(form.elements.phone.value);
      const body = { phone };
      if (form.elements.mode.value === "tail") {
        body.id_last6 = form.elements.id_last6.value.trim().toUpperCase();
      } else {
        body.name = form.elements.name.value.trim();
        body.id_number = form.elements.id_number.value.trim().toUpperCase();
      }
      const button = $("verify-submit");
      button.disabled = true;
      try {
        const started = await api("POST", "/v1/verifications", body);
        clearIdentity();
        // Never the name or the ID number: the id, the phone and the times only.
        const pending = {
          id: started.verification_id,
          phone,
          expires_at: started.expires_at,
          resend_after: started.resend_after,
          deadline: Date.now() + started.expires_in * 1000,
        };
        store.setItem(KEYS.pending, JSON.stringify(pending));
        askForCode(pending);
      } catch (failure) {
        fail(failure);
      } finally {
        button.disabled = false;
      }
    });

    codeForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      quiet();
      const code = codeForm.elements.code.value.trim();
      try {
        const granted = await api("POST", `/v1/verifications/${encodeURIComponent(verificationId)}/code`, { code });
        store.setItem(KEYS.token, granted.access_token);
        store.setItem(KEYS.expires, String(Date.now() + granted.expires_in * 1000));
        store.setItem(KEYS.phone, verificationPhone);
        forget();
        codeForm.elements.code.value = "";
        form.reset();
        window.location.assign("/me/numbers");
      } catch (failure) {
        codeForm.elements.code.value = "";
        fail(failure);
        // A locked or unknown verification takes no more codes: back to the details.
        // (An expired or used one says so in the message; "start again" is one click,
        // and a reload no longer brings it back.)
        if (failure instanceof ApiFailure && (failure.status === 429 || failure.status === 404)) restart();
        const dead = failure instanceof ApiFailure && failure.details.some((d) => d && (d.reason === "EXPIRED" || d.reason === "USED"));
        if (dead) store.removeItem(KEYS.pending);
      }
    });

    $("verify-restart").addEventListener("click", () => {
      quiet();
      restart();
    });
  }

  // ----- opening requests ---------------------------------------------------------------

  async function open(path, body, button) {
    quiet();
    if (button) button.disabled = true;
    try {
      const accepted = await api("POST", path, body);
      window.location.assign(`/me/requests/${encodeURIComponent(accepted.request_id)}`);
    } catch (failure) {
      fail(failure);
      if (button) button.disabled = false;
    }
  }

  // ----- my numbers -------------------------------------------------------------------

  async function numbersPage() {
    if (!needToken()) return;
    const verified = store.getItem(KEYS.phone);
    watchInbox(verified);
    $("inquiry-button").addEventListener("click", (event) => open("/v1/inquiries", {}, event.currentTarget));
    let numbers;
    try {
      numbers = await api("GET", "/v1/me/numbers");
    } catch (failure) {
      fail(failure);
      return;
    }
    const body = document.getElementById("numbers-body");
    $("numbers-empty").hidden = numbers.length > 0;
    body.replaceChildren(...numbers.map((held) => numberRow(held)));
  }

  // The API shows numbers masked; a request names one by its ref from that list.
  function numberRow(held) {
    const actions = el("div", { className: "row-actions" });
    if (held.current) {
      const select = el(
        "select",
        { testid: "detail-platform", "aria-label": "企业 Enterprise" },
        (config.platforms || []).map((p) => el("option", { value: p.code }, p.name)),
      );
      actions.append(
        el(
          "span",
          { className: "group" },
          select,
          el(
            "button",
            {
              type: "button",
              testid: "detail-button",
              onclick: (event) => {
                if (select.value) open("/v1/details", { number_ref: held.ref, platform: select.value }, event.currentTarget);
              },
            },
            "账号明细 List my accounts",
          ),
        ),
        el(
          "button",
          {
            type: "button",
            testid: "unbind-button",
            onclick: (event) => open("/v1/unbind-requests", { number_ref: held.ref }, event.currentTarget),
          },
          "一键解绑 Unbind what the previous holder left",
        ),
      );
    } else {
      actions.append(
        el(
          "button",
          {
            type: "button",
            testid: "history-button",
            onclick: (event) => open("/v1/history-inquiries", { number_ref: held.ref }, event.currentTarget),
          },
          "历史查询 Accounts from my time with it",
        ),
      );
    }
    return el(
      "tr",
      { testid: "number-row", "data-current": held.current ? "true" : "false" },
      el("td", {}, el("span", { testid: "number" }, held.number), " ", held.current ? el("span", { className: "badge", testid: "number-current" }, "现持有 current") : el("span", { className: "badge muted", testid: "number-former" }, "曾持有 former")),
      el("td", {}, held.carrier),
      el("td", { testid: "number-tenure" }, `${day(held.started_on)} → ${held.ended_on ? day(held.ended_on) : "至今 now"}`),
      el("td", {}, actions),
    );
  }

  // ----- my requests ------------------------------------------------------------------

  function numberOf(request) {
    const params = request.params || {};
    if (params.number) return mask(params.number);
    if (params.numbers) return params.numbers.map(mask).join(", ");
    return "";
  }

  async function requestsPage() {
    if (!needToken()) return;
    watchInbox(store.getItem(KEYS.phone));
    const refresh = async () => {
      let requests;
      try {
        requests = await api("GET", "/v1/requests");
      } catch (failure) {
        fail(failure);
        return false;
      }
      $("requests-empty").hidden = requests.length > 0;
      document.getElementById("requests-body").replaceChildren(
        ...requests.map((r) =>
          el(
            "tr",
            { testid: "request-row", "data-request-id": r.request_id, "data-state": r.state },
            el("td", {}, KINDS[r.kind] || r.kind, " ", el("span", { className: "muted" }, numberOf(r))),
            el(
              "td",
              {},
              el("span", { testid: "request-row-state" }, STATES[r.state] || r.state),
              r.overdue.length ? el("span", { className: "badge overdue" }, "逾期 overdue") : null,
            ),
            el("td", {}, when(r.created_at)),
            el("td", {}, when(r.due_by)),
            el("td", {}, el("a", { href: `/me/requests/${encodeURIComponent(r.request_id)}`, testid: "request-link" }, "查看 Open →")),
          ),
        ),
      );
      return requests.some((r) => r.state !== "completed");
    };
    const loop = async () => {
      if (await refresh()) window.setTimeout(loop, 3000);
    };
    loop();
  }

  // ----- one request --------------------------------------------------------------------

  function resultOf(request, task) {
    if (task.state === "failed") {
      return el("span", { testid: "result-error", className: "error-text" }, `平台未能答复 the platform did not answer (${task.error || "error"})`);
    }
    const answer = task.answer;
    if (!answer) return el("span", { className: "muted" }, "—");
    if (Array.isArray(answer.counts)) {
      const items = answer.counts.map((c) =>
        el("li", { testid: "result-count", "data-app": c.app, "data-count": String(c.count) }, `${appName(task.platform, c.app)}: ${c.count}`),
      );
      return el("ul", { className: "plain" }, items.length ? items : el("li", { className: "muted" }, "0"));
    }
    if (Array.isArray(answer.accounts)) {
      if (!answer.accounts.length) return el("span", { testid: "result-accounts-none" }, "没有账号 No accounts");
      return el(
        "table",
        { className: "accounts", testid: "accounts" },
        el("thead", {}, el("tr", {}, el("th", {}, "应用 App"), el("th", {}, "账号 Account"), el("th", {}, "绑定 Bound"), el("th", {}, "异议 Not mine?"))),
        el("tbody", {}, answer.accounts.map((account) => accountRow(request, task, account))),
      );
    }
    if (typeof answer.unbound === "number") {
      // A count: the accounts detached were the previous holders', not shown by name. An
      // unbind of several stretches says no "kept", and "refused" when a platform said no.
      return el(
        "span",
        {},
        "已解绑 unbound: ",
        el("span", { testid: "result-unbound", "data-count": String(answer.unbound) }, String(answer.unbound)),
        typeof answer.kept === "number" ? [" · 保留 kept: ", el("span", { testid: "result-kept" }, String(answer.kept))] : [],
        answer.refused ? [" · 被拒绝 refused: ", el("span", { testid: "result-refused" }, String(answer.refused))] : [],
      );
    }
    if (answer.outcome) {
      const done = answer.outcome === "done";
      return el(
        "span",
        { testid: "result-outcome", "data-outcome": answer.outcome },
        done ? "已办理 done" : `被拒绝 refused${answer.reason ? `: ${answer.reason}` : ""}`,
      );
    }
    return el("code", {}, JSON.stringify(answer));
  }

  function accountRow(request, task, account) {
    const select = el(
      "select",
      { testid: "dispute-action", "aria-label": "处理方式 Action" },
      el("option", { value: "" }, "选择 choose…"),
      Object.entries(ACTIONS).map(([value, label]) => el("option", { value }, label)),
    );
    const button = el(
      "button",
      {
        type: "button",
        testid: "dispute-button",
        onclick: () => {
          if (!select.value) {
            say("请选择处理方式。Choose what to do with the account first.", "error");
            return;
          }
          const params = request.params || {};
          open(
            "/v1/disputes",
            { number: params.number, platform: task.platform, account_ref: account.account_ref, action: select.value },
            button,
          );
        },
      },
      "提交异议 Not mine",
    );
    return el(
      "tr",
      { testid: "account-row", "data-account-ref": account.account_ref },
      el("td", {}, appName(task.platform, account.app)),
      el("td", {}, el("span", { testid: "account-name" }, account.display_name_masked), " ", el("span", { className: "muted small" }, account.account_ref)),
      el("td", {}, when(account.bound_at)),
      el("td", {}, request.kind === "detail" ? [select, button] : null),
    );
  }

  function summary(request) {
    const totals = new Map();
    for (const task of request.platforms) {
      for (const c of (task.answer && task.answer.counts) || []) {
        const name = appName(task.platform, c.app);
        totals.set(name, (totals.get(name) || 0) + c.count);
      }
    }
    const found = [...totals.entries()].filter(([, count]) => count > 0);
    if (!found.length) return request.state === "completed" && totals.size ? "没有找到账号。No accounts found." : "";
    return "账号 Accounts: " + found.map(([name, count]) => `${name} ${count}`).join("、");
  }

  async function requestPage() {
    if (!needToken()) return;
    watchInbox(store.getItem(KEYS.phone));
    const id = config.request_id;
    const show = (request) => {
      $("request-kind").textContent = KINDS[request.kind] || request.kind;
      const state = $("request-state");
      state.textContent = STATES[request.state] || request.state;
      state.dataset.state = request.state;
      $("request-created").textContent = when(request.created_at);
      $("request-due").textContent = when(request.due_by, true);
      $("request-number").textContent = numberOf(request);
      $("request-pending").textContent = request.pending.length ? request.pending.map(platformName).join(", ") : "—";
      const overdue = $("request-overdue");
      overdue.hidden = !request.overdue.length;
      overdue.textContent = request.overdue.length
        ? `逾期 Overdue: ${request.overdue.map(platformName).join(", ")} missed the due time; the operator is told.`
        : "";
      $("request-summary").textContent = summary(request);
      document.getElementById("platforms-body").replaceChildren(
        ...request.platforms.map((task) =>
          el(
            "tr",
            { testid: "platform-row", "data-platform": task.platform, "data-state": task.state },
            el("td", {}, platformName(task.platform), task.number && request.kind === "inquiry" ? el("div", { className: "muted small" }, mask(task.number)) : null),
            el(
              "td",
              {},
              el("span", { testid: "platform-state" }, TASK_STATES[task.state] || task.state),
              task.overdue ? el("span", { className: "badge overdue", testid: "platform-overdue" }, "逾期 overdue") : null,
            ),
            el("td", {}, when(task.due_by)),
            el("td", { testid: "platform-result" }, resultOf(request, task)),
          ),
        ),
      );
      $("request-refresh").hidden = request.state === "completed";
    };
    const loop = async () => {
      let request;
      try {
        request = await api("GET", `/v1/requests/${encodeURIComponent(id)}`);
      } catch (failure) {
        fail(failure);
        return;
      }
      show(request);
      if (request.state !== "completed") window.setTimeout(loop, 1500);
    };
    loop();
  }

  // ----- every page ---------------------------------------------------------------------

  const signout = $("signout");
  if (token()) signout.hidden = false;
  signout.addEventListener("click", async () => {
    try {
      await api("DELETE", "/v1/me/session");
    } catch (_) {
      // signed out here either way
    }
    signOutLocally();
    store.removeItem(KEYS.phone);
    window.location.assign("/me");
  });

  const pages = { verify: verifyPage, numbers: numbersPage, requests: requestsPage, request: requestPage };
  const run = pages[config.page];
  if (run) run();
})();

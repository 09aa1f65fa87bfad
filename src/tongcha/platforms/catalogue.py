"""The enterprises Tongcha is seeded with: the 一证通查 2.0 launch set and the 一号通查 set.

This is data, not code: the registry is seeded from it, and the simulated platforms
take their apps and account models from it, so both always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AccountModel(StrEnum):
    # Each app has its own accounts (Alibaba: Taobao, Xianyu, DingTalk): counts per app.
    independent = "independent"
    # One account across the enterprise's apps (Baidu: Netdisk, Tieba): one count.
    unified = "unified"


@dataclass(frozen=True, slots=True)
class AppEntry:
    code: str
    name_zh: str
    name_en: str


@dataclass(frozen=True, slots=True)
class EnterpriseEntry:
    code: str
    name_zh: str
    name_en: str
    account_model: AccountModel
    apps: tuple[AppEntry, ...]


def _e(code: str, zh: str, en: str, model: AccountModel, *apps: tuple[str, str, str]) -> EnterpriseEntry:
    return EnterpriseEntry(code, zh, en, model, tuple(AppEntry(*app) for app in apps))


_ind, _uni = AccountModel.independent, AccountModel.unified

ENTERPRISES: tuple[EnterpriseEntry, ...] = (
    _e("TENCENT", "腾讯", "Tencent", _ind, ("wechat", "微信", "WeChat"), ("qq", "QQ", "QQ")),
    _e(
        "ALIBABA",
        "阿里巴巴",
        "Alibaba",
        _ind,
        ("taobao", "淘宝", "Taobao"),
        ("xianyu", "闲鱼", "Xianyu"),
        ("dingtalk", "钉钉", "DingTalk"),
    ),
    _e("ALIPAY", "支付宝", "Alipay", _ind, ("alipay", "支付宝", "Alipay")),
    _e("BAIDU", "百度", "Baidu", _uni, ("netdisk", "百度网盘", "Baidu Netdisk"), ("tieba", "百度贴吧", "Baidu Tieba")),
    _e("KUAISHOU", "快手", "Kuaishou", _ind, ("kuaishou", "快手", "Kuaishou")),
    _e("DOUYIN", "抖音", "Douyin", _ind, ("douyin", "抖音", "Douyin")),
    _e("JD", "京东", "JD.com", _ind, ("jd", "京东", "JD")),
    _e("MEITUAN", "美团", "Meituan", _ind, ("meituan", "美团", "Meituan")),
    _e("DIANPING", "大众点评", "Dianping", _ind, ("dianping", "大众点评", "Dianping")),
    _e("WEIBO", "微博", "Weibo", _ind, ("weibo", "微博", "Weibo")),
    _e("TOUTIAO", "今日头条", "Toutiao", _ind, ("toutiao", "今日头条", "Toutiao")),
    _e("XIAOMI", "小米", "Xiaomi", _uni, ("mi", "小米账号", "Xiaomi Account")),
)

"""The wording of notices: Japanese defaults, which a tenant may replace per kind. Templates use
``string.Template`` placeholders: $name, $library, $items, $date and $titles (empty unless the tenant
includes titles)."""
from string import Template

KINDS = ("hold_ready", "due_soon", "overdue")

DEFAULTS = {
    "hold_ready": {
        "subject": "【$library】ご予約の資料をご用意しました",
        "body": "$name 様\n\nご予約いただいた資料を$libraryでご用意しました。\n"
                "$date までにカウンターでお受け取りください。\n$titles\n$library",
    },
    "due_soon": {
        "subject": "【$library】返却期限のお知らせ",
        "body": "$name 様\n\nお借りの資料 $items 点の返却期限は $date です。\n"
                "期限までにご返却または貸出延長のお手続きをお願いします。\n$titles\n$library",
    },
    "overdue": {
        "subject": "【$library】返却期限を過ぎた資料があります",
        "body": "$name 様\n\nお借りの資料 $items 点が返却期限（$date）を過ぎています。\n"
                "返却されるまで新たな貸出はできません。お早めにご返却ください。\n$titles\n$library",
    },
}


def render(kind, tenant_templates, values):
    """(subject, body) of a notice; a placeholder a tenant's template misspells stays as written."""
    chosen = {**DEFAULTS[kind], **(tenant_templates or {}).get(kind, {})}
    return tuple(Template(chosen[part]).safe_substitute(values) for part in ("subject", "body"))


def titles_line(titles):
    return "資料: " + "、".join(f"「{title}」" for title in titles) + "\n" if titles else ""

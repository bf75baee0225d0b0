from shiori.errors import DomainError


class NoticeNotFound(DomainError):
    code = "NOTICE_NOT_FOUND"
    default_message = "この通知は見つかりません"

from shiori.errors import DomainError


class PatronNotFound(DomainError):
    code = "PATRON_NOT_FOUND"
    default_message = "no such patron"


class PatronHasLoans(DomainError):
    code = "PATRON_HAS_LOANS"
    default_message = "the patron still has items on loan"


class CardExpired(DomainError):
    code = "CARD_EXPIRED"
    default_message = "利用カードの有効期限が切れています。カウンターで更新してください"


class PatronSuspended(DomainError):
    code = "PATRON_SUSPENDED"
    default_message = "この利用者は利用停止中です"


class CardReportedLost(DomainError):
    code = "CARD_REPORTED_LOST"
    default_message = "このカードは紛失届が出されています。再発行されたカードをお使いください"


class InvalidCredentials(DomainError):
    code = "INVALID_CREDENTIALS"
    default_message = "unknown user name or wrong password"


class PinTooCommon(DomainError):
    code = "PIN_TOO_COMMON"
    default_message = "推測されやすい暗証番号は使えません（0000、1234 のような同じ数字や連番など）。別の番号にしてください"
    field_message = "a PIN others would try first: the same digit, a run such as 1234 or 9876, or a well-known one"


class UsernameTaken(DomainError):
    code = "USERNAME_TAKEN"
    default_message = "this user name is taken"


class StaffAccountNotFound(DomainError):
    code = "STAFF_ACCOUNT_NOT_FOUND"
    default_message = "no such staff account"


class LastAdmin(DomainError):
    code = "LAST_ADMIN"
    default_message = "the tenant's last admin account cannot be deleted"


class CurrentPinWrong(DomainError):
    code = "CURRENT_PIN_WRONG"
    default_message = "いまの暗証番号が違います。暗証番号は変わっていません"
    field_message = "not the PIN of this card"

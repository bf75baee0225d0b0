"""The loans service's refusals. Messages are in Japanese: the desk reads them out to the patron."""
from shiori.errors import DomainError


class ItemAlreadyOnLoan(DomainError):
    code = "ITEM_ALREADY_ON_LOAN"
    default_message = "この資料は貸出中です"


class ItemNotOnLoan(DomainError):
    code = "ITEM_NOT_ON_LOAN"
    default_message = "この資料は貸出されていません"


class ItemNotForLoan(DomainError):
    code = "ITEM_NOT_FOR_LOAN"
    default_message = "この資料は館内利用のみで、貸出できません"


class LoanNotFound(DomainError):
    code = "LOAN_NOT_FOUND"
    default_message = "この貸出は見つかりません"


class LoanLimitReached(DomainError):
    code = "LOAN_LIMIT_REACHED"
    default_message = "貸出冊数の上限に達しています"


class OverdueItems(DomainError):
    code = "OVERDUE_ITEMS"
    default_message = "返却期限を過ぎた資料があるため貸出できません"


class BorrowingSuspended(DomainError):
    code = "BORROWING_SUSPENDED"
    default_message = "延滞による貸出停止期間中です"


class LibraryClosed(DomainError):
    code = "LIBRARY_CLOSED"
    default_message = "この図書館は本日休館日です"


class RenewalLimitReached(DomainError):
    code = "RENEWAL_LIMIT_REACHED"
    default_message = "延長回数の上限に達しています"


class LoanOverdue(DomainError):
    code = "LOAN_OVERDUE"
    default_message = "返却期限を過ぎているため延長できません"


class LoanPolicyNotFound(DomainError):
    code = "LOAN_POLICY_NOT_FOUND"
    default_message = "この貸出規則は見つかりません"


class LoanPolicyExists(DomainError):
    code = "LOAN_POLICY_EXISTS"
    default_message = "同じ条件の貸出規則がすでにあります"


class ItemHeldForAnotherPatron(DomainError):
    code = "ITEM_HELD_FOR_ANOTHER_PATRON"
    default_message = "この資料は他の利用者の予約資料のため貸出できません"


class HoldsWaiting(DomainError):
    code = "HOLDS_WAITING"
    default_message = "この資料には予約が入っているため延長できません"


class HoldNotFound(DomainError):
    code = "HOLD_NOT_FOUND"
    default_message = "この予約は見つかりません"


class HoldExists(DomainError):
    code = "HOLD_EXISTS"
    default_message = "この資料はすでに予約されています"


class HoldLimitReached(DomainError):
    code = "HOLD_LIMIT_REACHED"
    default_message = "予約件数の上限に達しています"


class WrongPickupLibrary(DomainError):
    code = "WRONG_PICKUP_LIBRARY"
    default_message = "この図書館は受取館に指定できません"


class WorkAlreadyOnLoan(DomainError):
    code = "WORK_ALREADY_ON_LOAN"
    default_message = "この資料はすでに借りています"

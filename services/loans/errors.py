from shiori.errors import DomainError


class ItemAlreadyOnLoan(DomainError):
    code = "ITEM_ALREADY_ON_LOAN"
    default_message = "this item is already on loan"


class ItemNotOnLoan(DomainError):
    code = "ITEM_NOT_ON_LOAN"
    default_message = "this item is not on loan"

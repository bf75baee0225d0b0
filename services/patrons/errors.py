from shiori.errors import DomainError


class PatronNotFound(DomainError):
    code = "PATRON_NOT_FOUND"
    default_message = "no such patron"


class PatronHasLoans(DomainError):
    code = "PATRON_HAS_LOANS"
    default_message = "the patron still has items on loan"


class PatronBlocked(DomainError):
    code = "PATRON_BLOCKED"
    default_message = "this card cannot be used to borrow"


class InvalidCredentials(DomainError):
    code = "INVALID_CREDENTIALS"
    default_message = "unknown user name or wrong password"


class UsernameTaken(DomainError):
    code = "USERNAME_TAKEN"
    default_message = "this user name is taken"


class StaffAccountNotFound(DomainError):
    code = "STAFF_ACCOUNT_NOT_FOUND"
    default_message = "no such staff account"


class LastAdmin(DomainError):
    code = "LAST_ADMIN"
    default_message = "the tenant's last admin account cannot be deleted"

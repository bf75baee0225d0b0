from shiori.errors import DomainError


class TenantNotFound(DomainError):
    code = "TENANT_NOT_FOUND"
    default_message = "no such tenant"


class LibraryNotFound(DomainError):
    code = "LIBRARY_NOT_FOUND"
    default_message = "no such library"


class LibraryExists(DomainError):
    code = "LIBRARY_EXISTS"
    default_message = "a library with this code exists already"


class WorkNotFound(DomainError):
    code = "WORK_NOT_FOUND"
    default_message = "no such work"


class ItemNotFound(DomainError):
    code = "ITEM_NOT_FOUND"
    default_message = "no item has this barcode"


class BarcodeInUse(DomainError):
    code = "BARCODE_IN_USE"
    default_message = "another item has this barcode"

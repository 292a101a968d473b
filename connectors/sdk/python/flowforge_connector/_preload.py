"""Standard-library modules that CPython imports lazily, imported up front.

componentize-py snapshots the interpreter after importing the app at build time; with WASI
stubbed out there is no file system at run time, so a module first imported while a
request runs traps the guest. These are the lazy imports connectors commonly trip over
(`datetime.strptime`, the idna and latin-1 codecs).
"""

import importlib

LAZY_MODULES = (
    "_strptime",
    "encodings.ascii",
    "encodings.idna",
    "encodings.latin_1",
    "encodings.utf_8",
)

for _name in LAZY_MODULES:
    importlib.import_module(_name)

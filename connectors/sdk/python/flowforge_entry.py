"""The module componentize-py builds: it imports the author's `app` and exports `Handler`.

The builder passes this module's name to `componentize-py componentize`, so `app.py`
needs no glue: a `handle(config, input)` function (or one marked `@connector`) is enough.
"""

import app  # type: ignore[import-not-found]
from flowforge_connector._entry import make_handler  # type: ignore[import-not-found]

Handler = make_handler(app)

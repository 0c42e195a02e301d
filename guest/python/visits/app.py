"""A tollgate plugin in Python: counts a visit to a page under the page's
lock and answers with the count and the lock's fencing token, as JSON.

Build and run it with ../build-and-run (see guest/README.md, "Python").
"""

# Import every module at the top: the component holds only what was
# imported when it was built, so an import inside `run` fails at run time.
import json

from componentize_py_types import Err
from wit_world import WitWorld as Plugin
from wit_world.imports import counter, lock
from wit_world.imports.lock import LockOptions


class WitWorld(Plugin):
    def run(self, input: bytes) -> bytes:
        page = input.decode() or "home"
        options = LockOptions(ttl_ms=5_000, wait_ms=2_000, renew=False)
        try:
            # Leaving the `with` block releases the lock; so does a trap or
            # the end of the invocation, whatever the plugin forgot.
            with lock.acquire(f"page/{page}", options) as guard:
                visits = counter.incr(f"visits/{page}", 1, None)
                token = guard.fencing_token()
        except Err as error:
            # A tollgate error is a variant case: its class name says which.
            raise Err(f"tollgate: {type(error.value).__name__} {error.value}")
        return json.dumps(
            {"page": page, "visits": visits, "fencing_token": token}
        ).encode()

"""tests/test_api.py and tests/test_api_errors.py, each test again through PgBouncer
(see conftest.py: the `app` and `saga` fixtures are pooler-mode sagas through it)."""

from tests.test_api import *  # noqa: F403
from tests.test_api_errors import *  # noqa: F403

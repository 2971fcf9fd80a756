"""The test settings with the Redis channel layer (for processes started by live tests)."""

import os

from tests.settings import *  # noqa: F403

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [os.environ.get("ATW_TEST_REDIS", "redis://127.0.0.1:6379/0")]},
    }
}

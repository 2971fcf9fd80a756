"""The test settings with a Redis channel layer at ATW_TEST_LAYER_REDIS (fault tests' own server)."""

import os

from tests.settings import *  # noqa: F403

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [os.environ.get("ATW_TEST_LAYER_REDIS", "redis://127.0.0.1:6379/0")]},
    }
}

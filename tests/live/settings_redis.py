"""The test settings with the Redis channel layer (for processes started by live tests)."""

import os

from tests.settings import *  # noqa: F403

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # Above channels_redis's 5 s blocking read: redis-py 8 times reads out after 5 s by default.
            "hosts": [
                {
                    "address": os.environ.get("ATW_TEST_REDIS", "redis://127.0.0.1:6379/0"),
                    "socket_timeout": 30,
                }
            ]
        },
    }
}

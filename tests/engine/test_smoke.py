import pytest

from django_atw import TaskStatus
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


async def test_quick_start(worker):
    task_id = await worker.add_task(tasks.process_data, [1, 2, 3, 4, 5], priority=0)
    future = await worker.get_task_future(task_id)
    assert await future == [2, 4, 6, 8, 10]
    info = await worker.get_task_info(task_id)
    assert info.status == TaskStatus.COMPLETED
    assert info.progress == 1.0

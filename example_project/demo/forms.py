"""The form that enqueues a demo task."""

from __future__ import annotations

import inspect
import json
from typing import Any

from django import forms

import django_atw

# Names enqueue() takes for itself: a task argument with one of these names cannot be passed
# through ``**kwargs``. The worker sets ``progress_callback``.
RESERVED_NAMES = frozenset(
    name
    for name, param in inspect.signature(django_atw.enqueue).parameters.items()
    if param.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
) | {"progress_callback"}


_JSON_KINDS: dict[type, str] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


class EnqueueForm(forms.Form):
    task_type = forms.ChoiceField(label="Task type")
    priority = forms.IntegerField(
        label="Priority", initial=0, help_text="Lower runs first.", min_value=-1000, max_value=1000
    )
    timeout = forms.FloatField(
        label="Timeout (seconds)",
        required=False,
        min_value=0.1,
        help_text="Optional. The task fails if it runs longer.",
    )
    use_cache = forms.BooleanField(
        label="Use the result cache",
        required=False,
        initial=True,
        help_text="An equal task (same type and arguments) that completed before answers at once.",
    )
    kwargs = forms.CharField(
        label="Keyword arguments (a JSON object)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "cols": 60, "spellcheck": "false"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["task_type"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(name, name) for name in django_atw.get_all_task_types()]

    def clean_kwargs(self) -> dict[str, Any]:
        raw = self.cleaned_data["kwargs"].strip() or "{}"
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"This is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from None
        if not isinstance(value, dict):
            raise forms.ValidationError(
                f'Enter a JSON object such as {{"n": 10}}, not {_JSON_KINDS.get(type(value), "this")}.'
            )
        reserved = sorted(RESERVED_NAMES & value.keys())
        if reserved:
            raise forms.ValidationError(
                f"{', '.join(repr(name) for name in reserved)}: reserved by enqueue(), "
                "cannot be a task argument here."
            )
        return value

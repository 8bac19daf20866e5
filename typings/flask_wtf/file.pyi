# The part of Flask-WTF 1.3's file fields this site uses: the field's data is the uploaded file
# (a FileStorage), or None when none was sent.
from typing import Any

from werkzeug.datastructures import FileStorage
from wtforms import FileField as _FileField

class FileField(_FileField):
    data: FileStorage | None

class FileRequired:
    def __init__(self, message: Any = None) -> None: ...
    def __call__(self, form: Any, field: Any) -> None: ...

"""The request and response bodies of the render API (seed-compatible, extended)."""

from __future__ import annotations

import keyword
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from handler.settings import get_settings

Quality = Literal["-ql", "-qm", "-qh", "-qp", "-qk"]
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class RenderRequest(BaseModel):
    """`POST /api/render`, or a direct invoke's event. Unknown fields are ignored."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    code_content: str = Field(alias="codeContent", min_length=1, strict=True)
    quality: Quality = "-qm"
    scene_name: str | None = Field(None, alias="sceneName", strict=True)
    cache: bool = Field(True, strict=True)
    run_async: bool = Field(False, alias="async", strict=True)
    job_id: str | None = Field(None, alias="jobId", pattern=JOB_ID_PATTERN, strict=True)
    chunks: Annotated[int, Field(ge=1, strict=True)] | Literal["auto"] = 1

    @field_validator("chunks")
    @classmethod
    def _within_chunk_limit(cls, chunks: int | str) -> int | str:
        limit = get_settings().max_chunks
        if isinstance(chunks, int) and chunks > limit:
            raise ValueError(f"at most {limit} chunks (MAX_CHUNKS)")
        return chunks

    @field_validator("code_content")
    @classmethod
    def _within_size_limit(cls, code: str) -> str:
        limit = get_settings().max_code_bytes
        size = len(code.encode("utf-8"))
        if size > limit:
            raise ValueError(f"code is {size} bytes; the limit is {limit} bytes (MAX_CODE_BYTES)")
        return code

    @field_validator("scene_name")
    @classmethod
    def _is_class_name(cls, name: str | None) -> str | None:
        if name is not None and (not name.isidentifier() or keyword.iskeyword(name)):
            raise ValueError("sceneName must be a Python class name")
        return name


class Timings(BaseModel):
    """Seconds spent in each step of the request."""

    model_config = ConfigDict(populate_by_name=True)

    plan_seconds: float = Field(0.0, alias="planSeconds")
    render_seconds: float = Field(alias="renderSeconds")
    upload_seconds: float = Field(alias="uploadSeconds")
    total_seconds: float = Field(alias="totalSeconds")


class RenderResponse(BaseModel):
    """The seed's `message` and `s3Key`, plus where the video is and how it was made."""

    model_config = ConfigDict(populate_by_name=True)

    message: str = "Video created and uploaded successfully."
    s3_key: str = Field(alias="s3Key")
    bucket: str
    url: str
    scene_name: str = Field(alias="sceneName")
    quality: Quality
    cached: bool
    chunks: int = 1
    timings: Timings

    def body(self) -> dict[str, object]:
        """The JSON body, with the API's field names."""
        return self.model_dump(by_alias=True)

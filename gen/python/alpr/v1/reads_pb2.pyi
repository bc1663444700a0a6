import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_KIND_UNSPECIFIED: _ClassVar[NodeKind]
    NODE_KIND_FIXED: _ClassVar[NodeKind]
    NODE_KIND_MOBILE: _ClassVar[NodeKind]
NODE_KIND_UNSPECIFIED: NodeKind
NODE_KIND_FIXED: NodeKind
NODE_KIND_MOBILE: NodeKind

class BoundingBox(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    x1: int
    y1: int
    x2: int
    y2: int
    def __init__(self, x1: _Optional[int] = ..., y1: _Optional[int] = ..., x2: _Optional[int] = ..., y2: _Optional[int] = ...) -> None: ...

class GeoPoint(_message.Message):
    __slots__ = ("latitude", "longitude", "accuracy_m", "heading_deg", "speed_mps")
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_M_FIELD_NUMBER: _ClassVar[int]
    HEADING_DEG_FIELD_NUMBER: _ClassVar[int]
    SPEED_MPS_FIELD_NUMBER: _ClassVar[int]
    latitude: float
    longitude: float
    accuracy_m: float
    heading_deg: float
    speed_mps: float
    def __init__(self, latitude: _Optional[float] = ..., longitude: _Optional[float] = ..., accuracy_m: _Optional[float] = ..., heading_deg: _Optional[float] = ..., speed_mps: _Optional[float] = ...) -> None: ...

class ModelVersions(_message.Message):
    __slots__ = ("detector", "ocr", "state_classifier")
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    OCR_FIELD_NUMBER: _ClassVar[int]
    STATE_CLASSIFIER_FIELD_NUMBER: _ClassVar[int]
    detector: str
    ocr: str
    state_classifier: str
    def __init__(self, detector: _Optional[str] = ..., ocr: _Optional[str] = ..., state_classifier: _Optional[str] = ...) -> None: ...

class PlateRead(_message.Message):
    __slots__ = ("read_id", "node_id", "camera_id", "node_kind", "capture_time", "plate_text", "confidence", "char_confidences", "region", "region_confidence", "plate_box", "plate_crop_jpeg", "frame_jpeg", "location", "model_versions", "frame_width", "frame_height")
    READ_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_KIND_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_FIELD_NUMBER: _ClassVar[int]
    PLATE_TEXT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CHAR_CONFIDENCES_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    REGION_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PLATE_BOX_FIELD_NUMBER: _ClassVar[int]
    PLATE_CROP_JPEG_FIELD_NUMBER: _ClassVar[int]
    FRAME_JPEG_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    FRAME_WIDTH_FIELD_NUMBER: _ClassVar[int]
    FRAME_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    read_id: str
    node_id: str
    camera_id: str
    node_kind: NodeKind
    capture_time: _timestamp_pb2.Timestamp
    plate_text: str
    confidence: float
    char_confidences: _containers.RepeatedScalarFieldContainer[float]
    region: str
    region_confidence: float
    plate_box: BoundingBox
    plate_crop_jpeg: bytes
    frame_jpeg: bytes
    location: GeoPoint
    model_versions: ModelVersions
    frame_width: int
    frame_height: int
    def __init__(self, read_id: _Optional[str] = ..., node_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., node_kind: _Optional[_Union[NodeKind, str]] = ..., capture_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., plate_text: _Optional[str] = ..., confidence: _Optional[float] = ..., char_confidences: _Optional[_Iterable[float]] = ..., region: _Optional[str] = ..., region_confidence: _Optional[float] = ..., plate_box: _Optional[_Union[BoundingBox, _Mapping]] = ..., plate_crop_jpeg: _Optional[bytes] = ..., frame_jpeg: _Optional[bytes] = ..., location: _Optional[_Union[GeoPoint, _Mapping]] = ..., model_versions: _Optional[_Union[ModelVersions, _Mapping]] = ..., frame_width: _Optional[int] = ..., frame_height: _Optional[int] = ...) -> None: ...

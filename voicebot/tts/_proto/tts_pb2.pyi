from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioFormatOptions(_message.Message):
    __slots__ = ("raw_audio", "container_audio")
    RAW_AUDIO_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_AUDIO_FIELD_NUMBER: _ClassVar[int]
    raw_audio: RawAudio
    container_audio: ContainerAudio
    def __init__(self, raw_audio: _Optional[_Union[RawAudio, _Mapping]] = ..., container_audio: _Optional[_Union[ContainerAudio, _Mapping]] = ...) -> None: ...

class RawAudio(_message.Message):
    __slots__ = ("audio_encoding", "sample_rate_hertz")
    class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        AUDIO_ENCODING_UNSPECIFIED: _ClassVar[RawAudio.AudioEncoding]
        LINEAR16_PCM: _ClassVar[RawAudio.AudioEncoding]
    AUDIO_ENCODING_UNSPECIFIED: RawAudio.AudioEncoding
    LINEAR16_PCM: RawAudio.AudioEncoding
    AUDIO_ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HERTZ_FIELD_NUMBER: _ClassVar[int]
    audio_encoding: RawAudio.AudioEncoding
    sample_rate_hertz: int
    def __init__(self, audio_encoding: _Optional[_Union[RawAudio.AudioEncoding, str]] = ..., sample_rate_hertz: _Optional[int] = ...) -> None: ...

class ContainerAudio(_message.Message):
    __slots__ = ("container_audio_type",)
    class ContainerAudioType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CONTAINER_AUDIO_TYPE_UNSPECIFIED: _ClassVar[ContainerAudio.ContainerAudioType]
        WAV: _ClassVar[ContainerAudio.ContainerAudioType]
        OGG_OPUS: _ClassVar[ContainerAudio.ContainerAudioType]
        MP3: _ClassVar[ContainerAudio.ContainerAudioType]
    CONTAINER_AUDIO_TYPE_UNSPECIFIED: ContainerAudio.ContainerAudioType
    WAV: ContainerAudio.ContainerAudioType
    OGG_OPUS: ContainerAudio.ContainerAudioType
    MP3: ContainerAudio.ContainerAudioType
    CONTAINER_AUDIO_TYPE_FIELD_NUMBER: _ClassVar[int]
    container_audio_type: ContainerAudio.ContainerAudioType
    def __init__(self, container_audio_type: _Optional[_Union[ContainerAudio.ContainerAudioType, str]] = ...) -> None: ...

class UtteranceSynthesisResponse(_message.Message):
    __slots__ = ("audio_chunk", "text_chunk", "start_ms", "length_ms")
    AUDIO_CHUNK_FIELD_NUMBER: _ClassVar[int]
    TEXT_CHUNK_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    LENGTH_MS_FIELD_NUMBER: _ClassVar[int]
    audio_chunk: AudioChunk
    text_chunk: TextChunk
    start_ms: int
    length_ms: int
    def __init__(self, audio_chunk: _Optional[_Union[AudioChunk, _Mapping]] = ..., text_chunk: _Optional[_Union[TextChunk, _Mapping]] = ..., start_ms: _Optional[int] = ..., length_ms: _Optional[int] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class TextChunk(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class Hints(_message.Message):
    __slots__ = ("voice", "speed", "volume", "role", "pitch_shift")
    VOICE_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PITCH_SHIFT_FIELD_NUMBER: _ClassVar[int]
    voice: str
    speed: float
    volume: float
    role: str
    pitch_shift: float
    def __init__(self, voice: _Optional[str] = ..., speed: _Optional[float] = ..., volume: _Optional[float] = ..., role: _Optional[str] = ..., pitch_shift: _Optional[float] = ...) -> None: ...

class UtteranceSynthesisRequest(_message.Message):
    __slots__ = ("model", "text", "hints", "output_audio_spec", "loudness_normalization_type", "unsafe_mode")
    class LoudnessNormalizationType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        LOUDNESS_NORMALIZATION_TYPE_UNSPECIFIED: _ClassVar[UtteranceSynthesisRequest.LoudnessNormalizationType]
        MAX_PEAK: _ClassVar[UtteranceSynthesisRequest.LoudnessNormalizationType]
        LUFS: _ClassVar[UtteranceSynthesisRequest.LoudnessNormalizationType]
    LOUDNESS_NORMALIZATION_TYPE_UNSPECIFIED: UtteranceSynthesisRequest.LoudnessNormalizationType
    MAX_PEAK: UtteranceSynthesisRequest.LoudnessNormalizationType
    LUFS: UtteranceSynthesisRequest.LoudnessNormalizationType
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    HINTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_AUDIO_SPEC_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_NORMALIZATION_TYPE_FIELD_NUMBER: _ClassVar[int]
    UNSAFE_MODE_FIELD_NUMBER: _ClassVar[int]
    model: str
    text: str
    hints: _containers.RepeatedCompositeFieldContainer[Hints]
    output_audio_spec: AudioFormatOptions
    loudness_normalization_type: UtteranceSynthesisRequest.LoudnessNormalizationType
    unsafe_mode: bool
    def __init__(self, model: _Optional[str] = ..., text: _Optional[str] = ..., hints: _Optional[_Iterable[_Union[Hints, _Mapping]]] = ..., output_audio_spec: _Optional[_Union[AudioFormatOptions, _Mapping]] = ..., loudness_normalization_type: _Optional[_Union[UtteranceSynthesisRequest.LoudnessNormalizationType, str]] = ..., unsafe_mode: _Optional[bool] = ...) -> None: ...

import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from ketch.api.v1 import auth_pb2 as _auth_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    STAGE_NONE: _ClassVar[Stage]
    STAGE_STAGING: _ClassVar[Stage]
    STAGE_PRODUCTION: _ClassVar[Stage]
    STAGE_ARCHIVED: _ClassVar[Stage]

class TransitionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSITION_STATE_UNSPECIFIED: _ClassVar[TransitionState]
    TRANSITION_STATE_PENDING: _ClassVar[TransitionState]
    TRANSITION_STATE_APPLIED: _ClassVar[TransitionState]
    TRANSITION_STATE_REJECTED: _ClassVar[TransitionState]
    TRANSITION_STATE_CANCELLED: _ClassVar[TransitionState]
    TRANSITION_STATE_EXPIRED: _ClassVar[TransitionState]
    TRANSITION_STATE_FAILED: _ClassVar[TransitionState]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_APPROVE: _ClassVar[Decision]
    DECISION_REJECT: _ClassVar[Decision]

class AuditAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIT_ACTION_UNSPECIFIED: _ClassVar[AuditAction]
    AUDIT_ACTION_MODEL_CREATED: _ClassVar[AuditAction]
    AUDIT_ACTION_MODEL_UPDATED: _ClassVar[AuditAction]
    AUDIT_ACTION_VERSION_REGISTERED: _ClassVar[AuditAction]
    AUDIT_ACTION_VERSION_UPDATED: _ClassVar[AuditAction]
    AUDIT_ACTION_ALIAS_SET: _ClassVar[AuditAction]
    AUDIT_ACTION_ALIAS_DELETED: _ClassVar[AuditAction]
    AUDIT_ACTION_POLICY_SET: _ClassVar[AuditAction]
    AUDIT_ACTION_TRANSITION_REQUESTED: _ClassVar[AuditAction]
    AUDIT_ACTION_TRANSITION_APPROVED: _ClassVar[AuditAction]
    AUDIT_ACTION_TRANSITION_REJECTED: _ClassVar[AuditAction]
    AUDIT_ACTION_TRANSITION_CANCELLED: _ClassVar[AuditAction]
    AUDIT_ACTION_TRANSITION_EXPIRED: _ClassVar[AuditAction]
    AUDIT_ACTION_TRANSITION_FAILED: _ClassVar[AuditAction]
    AUDIT_ACTION_TRANSITION_DENIED: _ClassVar[AuditAction]
    AUDIT_ACTION_STAGE_CHANGED: _ClassVar[AuditAction]
    AUDIT_ACTION_TOKEN_CREATED: _ClassVar[AuditAction]
    AUDIT_ACTION_TOKEN_REVOKED: _ClassVar[AuditAction]
    AUDIT_ACTION_PRINCIPAL_ROLE_SET: _ClassVar[AuditAction]
STAGE_UNSPECIFIED: Stage
STAGE_NONE: Stage
STAGE_STAGING: Stage
STAGE_PRODUCTION: Stage
STAGE_ARCHIVED: Stage
TRANSITION_STATE_UNSPECIFIED: TransitionState
TRANSITION_STATE_PENDING: TransitionState
TRANSITION_STATE_APPLIED: TransitionState
TRANSITION_STATE_REJECTED: TransitionState
TRANSITION_STATE_CANCELLED: TransitionState
TRANSITION_STATE_EXPIRED: TransitionState
TRANSITION_STATE_FAILED: TransitionState
DECISION_UNSPECIFIED: Decision
DECISION_APPROVE: Decision
DECISION_REJECT: Decision
AUDIT_ACTION_UNSPECIFIED: AuditAction
AUDIT_ACTION_MODEL_CREATED: AuditAction
AUDIT_ACTION_MODEL_UPDATED: AuditAction
AUDIT_ACTION_VERSION_REGISTERED: AuditAction
AUDIT_ACTION_VERSION_UPDATED: AuditAction
AUDIT_ACTION_ALIAS_SET: AuditAction
AUDIT_ACTION_ALIAS_DELETED: AuditAction
AUDIT_ACTION_POLICY_SET: AuditAction
AUDIT_ACTION_TRANSITION_REQUESTED: AuditAction
AUDIT_ACTION_TRANSITION_APPROVED: AuditAction
AUDIT_ACTION_TRANSITION_REJECTED: AuditAction
AUDIT_ACTION_TRANSITION_CANCELLED: AuditAction
AUDIT_ACTION_TRANSITION_EXPIRED: AuditAction
AUDIT_ACTION_TRANSITION_FAILED: AuditAction
AUDIT_ACTION_TRANSITION_DENIED: AuditAction
AUDIT_ACTION_STAGE_CHANGED: AuditAction
AUDIT_ACTION_TOKEN_CREATED: AuditAction
AUDIT_ACTION_TOKEN_REVOKED: AuditAction
AUDIT_ACTION_PRINCIPAL_ROLE_SET: AuditAction

class RegisteredModel(_message.Message):
    __slots__ = ("name", "description", "tags", "owner", "create_time", "update_time", "latest_version", "aliases", "etag")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    tags: _containers.ScalarMap[str, str]
    owner: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    latest_version: int
    aliases: _containers.ScalarMap[str, int]
    etag: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., owner: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., latest_version: _Optional[int] = ..., aliases: _Optional[_Mapping[str, int]] = ..., etag: _Optional[str] = ...) -> None: ...

class CreateModelRequest(_message.Message):
    __slots__ = ("model_id", "model", "request_id")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model: RegisteredModel
    request_id: str
    def __init__(self, model_id: _Optional[str] = ..., model: _Optional[_Union[RegisteredModel, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[RegisteredModel]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[RegisteredModel, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateModelRequest(_message.Message):
    __slots__ = ("model", "update_mask", "etag")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    model: RegisteredModel
    update_mask: _field_mask_pb2.FieldMask
    etag: str
    def __init__(self, model: _Optional[_Union[RegisteredModel, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("name", "model", "version", "stage", "aliases", "source_run", "source_path", "digest", "description", "tags", "creator", "create_time", "update_time", "stage_time", "etag")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_RUN_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PATH_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STAGE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    version: int
    stage: Stage
    aliases: _containers.RepeatedScalarFieldContainer[str]
    source_run: str
    source_path: str
    digest: str
    description: str
    tags: _containers.ScalarMap[str, str]
    creator: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    stage_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[int] = ..., stage: _Optional[_Union[Stage, str]] = ..., aliases: _Optional[_Iterable[str]] = ..., source_run: _Optional[str] = ..., source_path: _Optional[str] = ..., digest: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., creator: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stage_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class CreateModelVersionRequest(_message.Message):
    __slots__ = ("parent", "source_run", "source_path", "description", "tags", "request_id")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_RUN_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PATH_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    source_run: str
    source_path: str
    description: str
    tags: _containers.ScalarMap[str, str]
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., source_run: _Optional[str] = ..., source_path: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetModelVersionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListModelVersionsRequest(_message.Message):
    __slots__ = ("parent", "stage", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    stage: Stage
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., stage: _Optional[_Union[Stage, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelVersionsResponse(_message.Message):
    __slots__ = ("model_versions", "next_page_token")
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    model_versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    next_page_token: str
    def __init__(self, model_versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateModelVersionRequest(_message.Message):
    __slots__ = ("model_version", "update_mask", "etag")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    update_mask: _field_mask_pb2.FieldMask
    etag: str
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class ResolveModelVersionRequest(_message.Message):
    __slots__ = ("uri",)
    URI_FIELD_NUMBER: _ClassVar[int]
    uri: str
    def __init__(self, uri: _Optional[str] = ...) -> None: ...

class SetAliasRequest(_message.Message):
    __slots__ = ("model", "alias", "version", "etag")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    model: str
    alias: str
    version: int
    etag: str
    def __init__(self, model: _Optional[str] = ..., alias: _Optional[str] = ..., version: _Optional[int] = ..., etag: _Optional[str] = ...) -> None: ...

class DeleteAliasRequest(_message.Message):
    __slots__ = ("model", "alias", "etag")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    model: str
    alias: str
    etag: str
    def __init__(self, model: _Optional[str] = ..., alias: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class StagePolicy(_message.Message):
    __slots__ = ("stage", "approvals_required", "approver_roles", "gates", "archive_existing", "max_versions", "expiry_seconds", "allowed_from", "is_default")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    APPROVER_ROLES_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_EXISTING_FIELD_NUMBER: _ClassVar[int]
    MAX_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FROM_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    stage: Stage
    approvals_required: int
    approver_roles: _containers.RepeatedScalarFieldContainer[_auth_pb2.Role]
    gates: _containers.RepeatedScalarFieldContainer[str]
    archive_existing: bool
    max_versions: int
    expiry_seconds: int
    allowed_from: _containers.RepeatedScalarFieldContainer[Stage]
    is_default: bool
    def __init__(self, stage: _Optional[_Union[Stage, str]] = ..., approvals_required: _Optional[int] = ..., approver_roles: _Optional[_Iterable[_Union[_auth_pb2.Role, str]]] = ..., gates: _Optional[_Iterable[str]] = ..., archive_existing: _Optional[bool] = ..., max_versions: _Optional[int] = ..., expiry_seconds: _Optional[int] = ..., allowed_from: _Optional[_Iterable[_Union[Stage, str]]] = ..., is_default: _Optional[bool] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("name", "stages")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    name: str
    stages: _containers.RepeatedCompositeFieldContainer[StagePolicy]
    def __init__(self, name: _Optional[str] = ..., stages: _Optional[_Iterable[_Union[StagePolicy, _Mapping]]] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SetStagePolicyRequest(_message.Message):
    __slots__ = ("model", "policy")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    model: str
    policy: StagePolicy
    def __init__(self, model: _Optional[str] = ..., policy: _Optional[_Union[StagePolicy, _Mapping]] = ...) -> None: ...

class Evidence(_message.Message):
    __slots__ = ("url", "checks")
    class ChecksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    URL_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    url: str
    checks: _containers.ScalarMap[str, str]
    def __init__(self, url: _Optional[str] = ..., checks: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Vote(_message.Message):
    __slots__ = ("principal", "decision", "role", "comment", "evidence", "digest", "create_time")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    principal: str
    decision: Decision
    role: _auth_pb2.Role
    comment: str
    evidence: Evidence
    digest: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, principal: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., role: _Optional[_Union[_auth_pb2.Role, str]] = ..., comment: _Optional[str] = ..., evidence: _Optional[_Union[Evidence, _Mapping]] = ..., digest: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TransitionRequest(_message.Message):
    __slots__ = ("name", "id", "model_version", "from_stage", "target_stage", "state", "digest", "comment", "requester", "votes", "approvals", "approvals_required", "create_time", "update_time", "expire_time", "resolution")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FROM_STAGE_FIELD_NUMBER: _ClassVar[int]
    TARGET_STAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    model_version: str
    from_stage: Stage
    target_stage: Stage
    state: TransitionState
    digest: str
    comment: str
    requester: str
    votes: _containers.RepeatedCompositeFieldContainer[Vote]
    approvals: int
    approvals_required: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    resolution: str
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., model_version: _Optional[str] = ..., from_stage: _Optional[_Union[Stage, str]] = ..., target_stage: _Optional[_Union[Stage, str]] = ..., state: _Optional[_Union[TransitionState, str]] = ..., digest: _Optional[str] = ..., comment: _Optional[str] = ..., requester: _Optional[str] = ..., votes: _Optional[_Iterable[_Union[Vote, _Mapping]]] = ..., approvals: _Optional[int] = ..., approvals_required: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolution: _Optional[str] = ...) -> None: ...

class RequestTransitionRequest(_message.Message):
    __slots__ = ("model_version", "target_stage", "comment", "request_id", "etag")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_STAGE_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    target_stage: Stage
    comment: str
    request_id: str
    etag: str
    def __init__(self, model_version: _Optional[str] = ..., target_stage: _Optional[_Union[Stage, str]] = ..., comment: _Optional[str] = ..., request_id: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class GetTransitionRequestRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListTransitionRequestsRequest(_message.Message):
    __slots__ = ("model", "state", "page_size", "page_token")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    model: str
    state: TransitionState
    page_size: int
    page_token: str
    def __init__(self, model: _Optional[str] = ..., state: _Optional[_Union[TransitionState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTransitionRequestsResponse(_message.Message):
    __slots__ = ("requests", "next_page_token")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[TransitionRequest]
    next_page_token: str
    def __init__(self, requests: _Optional[_Iterable[_Union[TransitionRequest, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ApproveRequest(_message.Message):
    __slots__ = ("name", "comment", "evidence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    comment: str
    evidence: Evidence
    def __init__(self, name: _Optional[str] = ..., comment: _Optional[str] = ..., evidence: _Optional[_Union[Evidence, _Mapping]] = ...) -> None: ...

class RejectRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelTransitionRequestRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TransitionStageRequest(_message.Message):
    __slots__ = ("name", "stage", "comment", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    stage: Stage
    comment: str
    etag: str
    def __init__(self, name: _Optional[str] = ..., stage: _Optional[_Union[Stage, str]] = ..., comment: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class RegistryEvent(_message.Message):
    __slots__ = ("cursor", "sequence", "time", "actor", "action", "resource", "model", "before", "after", "request_id")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    sequence: int
    time: _timestamp_pb2.Timestamp
    actor: str
    action: AuditAction
    resource: str
    model: str
    before: str
    after: str
    request_id: str
    def __init__(self, cursor: _Optional[str] = ..., sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., action: _Optional[_Union[AuditAction, str]] = ..., resource: _Optional[str] = ..., model: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetAuditLogRequest(_message.Message):
    __slots__ = ("model", "actions", "page_size", "page_token")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    model: str
    actions: _containers.RepeatedScalarFieldContainer[AuditAction]
    page_size: int
    page_token: str
    def __init__(self, model: _Optional[str] = ..., actions: _Optional[_Iterable[_Union[AuditAction, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetAuditLogResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[RegistryEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[RegistryEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchRegistryRequest(_message.Message):
    __slots__ = ("from_cursor", "models", "actions", "start_at_end")
    FROM_CURSOR_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    START_AT_END_FIELD_NUMBER: _ClassVar[int]
    from_cursor: str
    models: _containers.RepeatedScalarFieldContainer[str]
    actions: _containers.RepeatedScalarFieldContainer[AuditAction]
    start_at_end: bool
    def __init__(self, from_cursor: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., actions: _Optional[_Iterable[_Union[AuditAction, str]]] = ..., start_at_end: _Optional[bool] = ...) -> None: ...

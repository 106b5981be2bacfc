from oncofed.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_OS: _ClassVar[Outcome]
    OUTCOME_RFS: _ClassVar[Outcome]

class Ties(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIES_UNSPECIFIED: _ClassVar[Ties]
    TIES_EFRON: _ClassVar[Ties]
    TIES_BRESLOW: _ClassVar[Ties]
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_OS: Outcome
OUTCOME_RFS: Outcome
TIES_UNSPECIFIED: Ties
TIES_EFRON: Ties
TIES_BRESLOW: Ties

class QueryBody(_message.Message):
    __slots__ = ("permit_hash", "researcher_key_id", "nonce", "issued_at", "expires_at", "target_centres", "min_participants", "dictionary", "cohort", "analysis", "exact_dates", "epsilon", "status_cutoff", "flower", "retry_of")
    PERMIT_HASH_FIELD_NUMBER: _ClassVar[int]
    RESEARCHER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TARGET_CENTRES_FIELD_NUMBER: _ClassVar[int]
    MIN_PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    DICTIONARY_FIELD_NUMBER: _ClassVar[int]
    COHORT_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    EXACT_DATES_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    STATUS_CUTOFF_FIELD_NUMBER: _ClassVar[int]
    FLOWER_FIELD_NUMBER: _ClassVar[int]
    RETRY_OF_FIELD_NUMBER: _ClassVar[int]
    permit_hash: bytes
    researcher_key_id: str
    nonce: bytes
    issued_at: int
    expires_at: int
    target_centres: _containers.RepeatedScalarFieldContainer[str]
    min_participants: int
    dictionary: _common_pb2.DictionaryRef
    cohort: Cohort
    analysis: Analysis
    exact_dates: bool
    epsilon: float
    status_cutoff: str
    flower: FlowerRun
    retry_of: bytes
    def __init__(self, permit_hash: _Optional[bytes] = ..., researcher_key_id: _Optional[str] = ..., nonce: _Optional[bytes] = ..., issued_at: _Optional[int] = ..., expires_at: _Optional[int] = ..., target_centres: _Optional[_Iterable[str]] = ..., min_participants: _Optional[int] = ..., dictionary: _Optional[_Union[_common_pb2.DictionaryRef, _Mapping]] = ..., cohort: _Optional[_Union[Cohort, _Mapping]] = ..., analysis: _Optional[_Union[Analysis, _Mapping]] = ..., exact_dates: _Optional[bool] = ..., epsilon: _Optional[float] = ..., status_cutoff: _Optional[str] = ..., flower: _Optional[_Union[FlowerRun, _Mapping]] = ..., retry_of: _Optional[bytes] = ...) -> None: ...

class FlowerRun(_message.Message):
    __slots__ = ("max_rounds",)
    MAX_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    max_rounds: int
    def __init__(self, max_rounds: _Optional[int] = ...) -> None: ...

class Cohort(_message.Message):
    __slots__ = ("equals", "in_set", "range", "prefix", "is_null", "not_null", "all_of", "any_of", "negate")
    EQUALS_FIELD_NUMBER: _ClassVar[int]
    IN_SET_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    IS_NULL_FIELD_NUMBER: _ClassVar[int]
    NOT_NULL_FIELD_NUMBER: _ClassVar[int]
    ALL_OF_FIELD_NUMBER: _ClassVar[int]
    ANY_OF_FIELD_NUMBER: _ClassVar[int]
    NEGATE_FIELD_NUMBER: _ClassVar[int]
    equals: Equals
    in_set: InSet
    range: Range
    prefix: Prefix
    is_null: str
    not_null: str
    all_of: CohortList
    any_of: CohortList
    negate: Cohort
    def __init__(self, equals: _Optional[_Union[Equals, _Mapping]] = ..., in_set: _Optional[_Union[InSet, _Mapping]] = ..., range: _Optional[_Union[Range, _Mapping]] = ..., prefix: _Optional[_Union[Prefix, _Mapping]] = ..., is_null: _Optional[str] = ..., not_null: _Optional[str] = ..., all_of: _Optional[_Union[CohortList, _Mapping]] = ..., any_of: _Optional[_Union[CohortList, _Mapping]] = ..., negate: _Optional[_Union[Cohort, _Mapping]] = ...) -> None: ...

class CohortList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Cohort]
    def __init__(self, items: _Optional[_Iterable[_Union[Cohort, _Mapping]]] = ...) -> None: ...

class Equals(_message.Message):
    __slots__ = ("field", "value")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    field: str
    value: str
    def __init__(self, field: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class InSet(_message.Message):
    __slots__ = ("field", "values")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    field: str
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, field: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class Range(_message.Message):
    __slots__ = ("field", "lower", "upper")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    field: str
    lower: str
    upper: str
    def __init__(self, field: _Optional[str] = ..., lower: _Optional[str] = ..., upper: _Optional[str] = ...) -> None: ...

class Prefix(_message.Message):
    __slots__ = ("field", "prefix")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    field: str
    prefix: str
    def __init__(self, field: _Optional[str] = ..., prefix: _Optional[str] = ...) -> None: ...

class Analysis(_message.Message):
    __slots__ = ("count", "crosstab", "summary", "histogram", "kaplan_meier", "logrank", "logistic", "cox", "poisson", "cox_pooled", "fedavg")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CROSSTAB_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    KAPLAN_MEIER_FIELD_NUMBER: _ClassVar[int]
    LOGRANK_FIELD_NUMBER: _ClassVar[int]
    LOGISTIC_FIELD_NUMBER: _ClassVar[int]
    COX_FIELD_NUMBER: _ClassVar[int]
    POISSON_FIELD_NUMBER: _ClassVar[int]
    COX_POOLED_FIELD_NUMBER: _ClassVar[int]
    FEDAVG_FIELD_NUMBER: _ClassVar[int]
    count: Count
    crosstab: Crosstab
    summary: Summary
    histogram: Histogram
    kaplan_meier: KaplanMeier
    logrank: LogRank
    logistic: Logistic
    cox: Cox
    poisson: Poisson
    cox_pooled: CoxPooled
    fedavg: FedAvg
    def __init__(self, count: _Optional[_Union[Count, _Mapping]] = ..., crosstab: _Optional[_Union[Crosstab, _Mapping]] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ..., histogram: _Optional[_Union[Histogram, _Mapping]] = ..., kaplan_meier: _Optional[_Union[KaplanMeier, _Mapping]] = ..., logrank: _Optional[_Union[LogRank, _Mapping]] = ..., logistic: _Optional[_Union[Logistic, _Mapping]] = ..., cox: _Optional[_Union[Cox, _Mapping]] = ..., poisson: _Optional[_Union[Poisson, _Mapping]] = ..., cox_pooled: _Optional[_Union[CoxPooled, _Mapping]] = ..., fedavg: _Optional[_Union[FedAvg, _Mapping]] = ...) -> None: ...

class Count(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Crosstab(_message.Message):
    __slots__ = ("fields",)
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, fields: _Optional[_Iterable[str]] = ...) -> None: ...

class FixedPoint(_message.Message):
    __slots__ = ("scale_bits", "bound")
    SCALE_BITS_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    scale_bits: int
    bound: float
    def __init__(self, scale_bits: _Optional[int] = ..., bound: _Optional[float] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("field", "fixed_point", "unit_bins", "quantiles")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    FIXED_POINT_FIELD_NUMBER: _ClassVar[int]
    UNIT_BINS_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    field: str
    fixed_point: FixedPoint
    unit_bins: bool
    quantiles: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, field: _Optional[str] = ..., fixed_point: _Optional[_Union[FixedPoint, _Mapping]] = ..., unit_bins: _Optional[bool] = ..., quantiles: _Optional[_Iterable[float]] = ...) -> None: ...

class Histogram(_message.Message):
    __slots__ = ("field",)
    FIELD_FIELD_NUMBER: _ClassVar[int]
    field: str
    def __init__(self, field: _Optional[str] = ...) -> None: ...

class Lattice(_message.Message):
    __slots__ = ("step_days", "horizon_days")
    STEP_DAYS_FIELD_NUMBER: _ClassVar[int]
    HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    step_days: int
    horizon_days: int
    def __init__(self, step_days: _Optional[int] = ..., horizon_days: _Optional[int] = ...) -> None: ...

class KaplanMeier(_message.Message):
    __slots__ = ("outcome", "cutoff", "lattice", "group_by", "group_levels")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_FIELD_NUMBER: _ClassVar[int]
    LATTICE_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    GROUP_LEVELS_FIELD_NUMBER: _ClassVar[int]
    outcome: Outcome
    cutoff: str
    lattice: Lattice
    group_by: str
    group_levels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, outcome: _Optional[_Union[Outcome, str]] = ..., cutoff: _Optional[str] = ..., lattice: _Optional[_Union[Lattice, _Mapping]] = ..., group_by: _Optional[str] = ..., group_levels: _Optional[_Iterable[str]] = ...) -> None: ...

class LogRank(_message.Message):
    __slots__ = ("outcome", "cutoff", "lattice", "group_by", "group_levels")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_FIELD_NUMBER: _ClassVar[int]
    LATTICE_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    GROUP_LEVELS_FIELD_NUMBER: _ClassVar[int]
    outcome: Outcome
    cutoff: str
    lattice: Lattice
    group_by: str
    group_levels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, outcome: _Optional[_Union[Outcome, str]] = ..., cutoff: _Optional[str] = ..., lattice: _Optional[_Union[Lattice, _Mapping]] = ..., group_by: _Optional[str] = ..., group_levels: _Optional[_Iterable[str]] = ...) -> None: ...

class DerivedEvent(_message.Message):
    __slots__ = ("survival", "cutoff", "horizon_days")
    SURVIVAL_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_FIELD_NUMBER: _ClassVar[int]
    HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    survival: Outcome
    cutoff: str
    horizon_days: int
    def __init__(self, survival: _Optional[_Union[Outcome, str]] = ..., cutoff: _Optional[str] = ..., horizon_days: _Optional[int] = ...) -> None: ...

class Logistic(_message.Message):
    __slots__ = ("outcome", "positive", "event", "covariates", "reference", "beta", "beta_scale_bits", "scale_bits", "round")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    COVARIATES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    BETA_SCALE_BITS_FIELD_NUMBER: _ClassVar[int]
    SCALE_BITS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    positive: _containers.RepeatedScalarFieldContainer[str]
    event: DerivedEvent
    covariates: _containers.RepeatedScalarFieldContainer[str]
    reference: _containers.RepeatedScalarFieldContainer[str]
    beta: _containers.RepeatedScalarFieldContainer[int]
    beta_scale_bits: int
    scale_bits: int
    round: int
    def __init__(self, outcome: _Optional[str] = ..., positive: _Optional[_Iterable[str]] = ..., event: _Optional[_Union[DerivedEvent, _Mapping]] = ..., covariates: _Optional[_Iterable[str]] = ..., reference: _Optional[_Iterable[str]] = ..., beta: _Optional[_Iterable[int]] = ..., beta_scale_bits: _Optional[int] = ..., scale_bits: _Optional[int] = ..., round: _Optional[int] = ...) -> None: ...

class Cox(_message.Message):
    __slots__ = ("outcome", "cutoff", "covariates", "reference", "ties", "beta", "beta_scale_bits", "scale_bits", "round")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_FIELD_NUMBER: _ClassVar[int]
    COVARIATES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    TIES_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    BETA_SCALE_BITS_FIELD_NUMBER: _ClassVar[int]
    SCALE_BITS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    outcome: Outcome
    cutoff: str
    covariates: _containers.RepeatedScalarFieldContainer[str]
    reference: _containers.RepeatedScalarFieldContainer[str]
    ties: Ties
    beta: _containers.RepeatedScalarFieldContainer[int]
    beta_scale_bits: int
    scale_bits: int
    round: int
    def __init__(self, outcome: _Optional[_Union[Outcome, str]] = ..., cutoff: _Optional[str] = ..., covariates: _Optional[_Iterable[str]] = ..., reference: _Optional[_Iterable[str]] = ..., ties: _Optional[_Union[Ties, str]] = ..., beta: _Optional[_Iterable[int]] = ..., beta_scale_bits: _Optional[int] = ..., scale_bits: _Optional[int] = ..., round: _Optional[int] = ...) -> None: ...

class Poisson(_message.Message):
    __slots__ = ("outcome", "cutoff", "lattice", "covariates", "reference", "beta", "beta_scale_bits", "scale_bits", "round")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_FIELD_NUMBER: _ClassVar[int]
    LATTICE_FIELD_NUMBER: _ClassVar[int]
    COVARIATES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    BETA_SCALE_BITS_FIELD_NUMBER: _ClassVar[int]
    SCALE_BITS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    outcome: Outcome
    cutoff: str
    lattice: Lattice
    covariates: _containers.RepeatedScalarFieldContainer[str]
    reference: _containers.RepeatedScalarFieldContainer[str]
    beta: _containers.RepeatedScalarFieldContainer[int]
    beta_scale_bits: int
    scale_bits: int
    round: int
    def __init__(self, outcome: _Optional[_Union[Outcome, str]] = ..., cutoff: _Optional[str] = ..., lattice: _Optional[_Union[Lattice, _Mapping]] = ..., covariates: _Optional[_Iterable[str]] = ..., reference: _Optional[_Iterable[str]] = ..., beta: _Optional[_Iterable[int]] = ..., beta_scale_bits: _Optional[int] = ..., scale_bits: _Optional[int] = ..., round: _Optional[int] = ...) -> None: ...

class FedAvg(_message.Message):
    __slots__ = ("outcome", "positive", "event", "covariates", "reference", "beta", "beta_scale_bits", "scale_bits", "round", "learning_rate", "local_epochs", "batch_size", "clip_norm", "dp_delta", "seed")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    COVARIATES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    BETA_SCALE_BITS_FIELD_NUMBER: _ClassVar[int]
    SCALE_BITS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    CLIP_NORM_FIELD_NUMBER: _ClassVar[int]
    DP_DELTA_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    positive: _containers.RepeatedScalarFieldContainer[str]
    event: DerivedEvent
    covariates: _containers.RepeatedScalarFieldContainer[str]
    reference: _containers.RepeatedScalarFieldContainer[str]
    beta: _containers.RepeatedScalarFieldContainer[int]
    beta_scale_bits: int
    scale_bits: int
    round: int
    learning_rate: float
    local_epochs: int
    batch_size: int
    clip_norm: float
    dp_delta: float
    seed: int
    def __init__(self, outcome: _Optional[str] = ..., positive: _Optional[_Iterable[str]] = ..., event: _Optional[_Union[DerivedEvent, _Mapping]] = ..., covariates: _Optional[_Iterable[str]] = ..., reference: _Optional[_Iterable[str]] = ..., beta: _Optional[_Iterable[int]] = ..., beta_scale_bits: _Optional[int] = ..., scale_bits: _Optional[int] = ..., round: _Optional[int] = ..., learning_rate: _Optional[float] = ..., local_epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., clip_norm: _Optional[float] = ..., dp_delta: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class CoxPooled(_message.Message):
    __slots__ = ("outcome", "cutoff", "lattice", "covariates", "reference", "ties", "beta", "beta_scale_bits", "scale_bits", "round", "offset")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_FIELD_NUMBER: _ClassVar[int]
    LATTICE_FIELD_NUMBER: _ClassVar[int]
    COVARIATES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    TIES_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    BETA_SCALE_BITS_FIELD_NUMBER: _ClassVar[int]
    SCALE_BITS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    outcome: Outcome
    cutoff: str
    lattice: Lattice
    covariates: _containers.RepeatedScalarFieldContainer[str]
    reference: _containers.RepeatedScalarFieldContainer[str]
    ties: Ties
    beta: _containers.RepeatedScalarFieldContainer[int]
    beta_scale_bits: int
    scale_bits: int
    round: int
    offset: int
    def __init__(self, outcome: _Optional[_Union[Outcome, str]] = ..., cutoff: _Optional[str] = ..., lattice: _Optional[_Union[Lattice, _Mapping]] = ..., covariates: _Optional[_Iterable[str]] = ..., reference: _Optional[_Iterable[str]] = ..., ties: _Optional[_Union[Ties, str]] = ..., beta: _Optional[_Iterable[int]] = ..., beta_scale_bits: _Optional[int] = ..., scale_bits: _Optional[int] = ..., round: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

//! The one table from Iggy's error codes to gRPC status codes.
//!
//! The match below names every `IggyError` variant and has no wildcard arm, so
//! a new variant in a future SDK fails to compile here until someone decides
//! what a client should see for it.

use iggy::prelude::IggyError;
use iggy_common::IggyErrorDiscriminants as E;
use tonic::Code;

/// The gRPC code a client receives for an error reported by Iggy (or by the
/// SDK on its way to Iggy).
pub fn grpc_code(error: &IggyError) -> Code {
    match E::from(error) {
        // The resource a request names does not exist.
        E::ResourceNotFound
        | E::StateFileNotFound
        | E::ClientNotFound
        | E::StreamIdNotFound
        | E::StreamNameNotFound
        | E::StreamDirectoryNotFound
        | E::TopicIdNotFound
        | E::TopicNameNotFound
        | E::TopicDirectoryNotFound
        | E::PartitionNotFound
        | E::NoPartitions
        | E::ConsumerOffsetNotFound
        | E::SegmentNotFound
        | E::ConsumerGroupIdNotFound
        | E::ConsumerGroupNameNotFound
        | E::ConsumerGroupMemberNotFound => Code::NotFound,

        // The name is taken.
        E::UserAlreadyExists
        | E::PersonalAccessTokenAlreadyExists
        | E::StreamNameAlreadyExists
        | E::TopicNameAlreadyExists
        | E::ConsumerGroupNameAlreadyExists
        | E::RequestAlreadyApplied => Code::AlreadyExists,

        // The request itself is malformed; retrying it unchanged cannot help.
        E::InvalidCommand
        | E::InvalidFormat
        | E::InvalidIdentifier
        | E::InvalidUsername
        | E::InvalidPassword
        | E::InvalidUserStatus
        | E::InvalidPersonalAccessTokenName
        | E::InvalidPersonalAccessTokenExpiry
        | E::InvalidSizeBytes
        | E::InvalidUtf8
        | E::InvalidNumberEncoding
        | E::InvalidBooleanValue
        | E::InvalidNumberValue
        | E::InvalidClientId
        | E::CannotParseHeaderKind
        | E::InvalidStreamName
        | E::InvalidStreamId
        | E::InvalidTopicSize
        | E::InvalidTopicName
        | E::InvalidTopicId
        | E::InvalidReplicationFactor
        | E::InvalidPartitionsCount
        | E::InvalidSegmentSize
        | E::InvalidMessagesCount
        | E::TooBigUserHeaders
        | E::InvalidHeaderKey
        | E::InvalidHeaderValue
        | E::TooBigMessagePayload
        | E::TooManyMessages
        | E::EmptyMessagePayload
        | E::InvalidMessagePayloadLength
        | E::InvalidMessageChecksum
        | E::InvalidKeyValueLength
        | E::CommandLengthError
        | E::InvalidSegmentsCount
        | E::NonZeroOffset
        | E::NonZeroTimestamp
        | E::InvalidIndexesByteSize
        | E::InvalidIndexesCount
        | E::InvalidMessagesSize
        | E::TooSmallMessage
        | E::InvalidMessageTimestampDelta
        | E::InvalidBatchChecksum
        | E::InvalidHeaderKind
        | E::UnsupportedOptionKey
        | E::InvalidOptionValue
        | E::OptionsBlockTooLarge
        | E::InvalidOffset
        | E::InvalidReservedField
        | E::InvalidConsumerGroupId
        | E::InvalidConsumerGroupName
        | E::TimestampOutOfRange
        | E::NotResolvedConsumer => Code::InvalidArgument,

        // Who the gateway is could not be established with Iggy.
        E::Unauthenticated
        | E::InvalidCredentials
        | E::InvalidPersonalAccessToken
        | E::PersonalAccessTokenExpired
        | E::JwtMissing
        | E::AccessTokenMissing
        | E::InvalidAccessToken
        | E::InvalidSession => Code::Unauthenticated,

        // Known to Iggy, but not allowed to do this.
        E::Unauthorized | E::UserInactive | E::CannotDeleteUser | E::CannotChangePermissions => {
            Code::PermissionDenied
        }

        // A limit of the server has been reached.
        E::PersonalAccessTokensLimitReached
        | E::UsersLimitReached
        | E::TooManyStreams
        | E::TooManyPartitions
        | E::TooManyTopics
        | E::TopicFull
        | E::PartitionIdSpaceExhausted
        | E::BackgroundSendBufferFull
        | E::BackgroundSendBufferOverflow => Code::ResourceExhausted,

        // Iggy (or the path to it) is not there right now; a retry may work.
        E::Disconnected
        | E::CannotEstablishConnection
        | E::StaleClient
        | E::TcpError
        | E::QuicError
        | E::HttpError
        | E::TransientNotCommitted
        | E::TransientNotAccepted
        | E::NotConnected
        | E::ClientShutdown
        | E::ConnectionClosed
        | E::EmptyResponse
        | E::WebSocketError
        | E::WebSocketConnectionError
        | E::WebSocketCloseError
        | E::WebSocketReceiveError
        | E::WebSocketSendError
        | E::CannotSendMessagesDueToClientDisconnection
        | E::BackgroundWorkerDisconnected
        | E::ShardCommunicationError
        | E::CannotCloseWebSocketConnection => Code::Unavailable,

        // Iggy did not answer in time.
        E::TaskTimeout | E::BackgroundSendTimeout => Code::DeadlineExceeded,

        // The request is valid but the system is not in a state to run it.
        E::SegmentClosed
        | E::ConsumerGroupPartitionNotOwned
        | E::AlreadyAuthenticated
        | E::ProducerClosed
        | E::CannotPollTopic => Code::FailedPrecondition,

        // A feature this server or SDK does not offer.
        E::FeatureUnavailable | E::IncompatibleProtocolVersion | E::InvalidVersion => {
            Code::Unimplemented
        }

        // Faults inside Iggy's storage or the SDK: nothing the client did.
        E::Error
        | E::InvalidConfiguration
        | E::CannotCreateBaseDirectory
        | E::CannotCreateRuntimeDirectory
        | E::CannotRemoveRuntimeDirectory
        | E::CannotCreateStateDirectory
        | E::StateFileCorrupted
        | E::InvalidStateEntryChecksum
        | E::CannotOpenDatabase
        | E::InvalidServerAddress
        | E::InvalidClientAddress
        | E::InvalidIpAddress
        | E::InvalidApiUrl
        | E::InvalidTlsDomain
        | E::InvalidTlsCertificatePath
        | E::InvalidTlsCertificate
        | E::FailedToAddCertificate
        | E::InvalidEncryptionKey
        | E::CannotEncryptData
        | E::CannotDecryptData
        | E::InvalidJwtAlgorithm
        | E::InvalidJwtSecret
        | E::CannotGenerateJwt
        | E::CannotFetchJwks
        | E::HttpResponseError
        | E::InvalidHttpRequest
        | E::InvalidJsonResponse
        | E::InvalidBytesResponse
        | E::CannotCreateEndpoint
        | E::CannotParseUrl
        | E::CannotCreateStreamsDirectory
        | E::CannotCreateStreamDirectory
        | E::CannotCreateStreamInfo
        | E::CannotUpdateStreamInfo
        | E::CannotOpenStreamInfo
        | E::CannotReadStreamInfo
        | E::CannotCreateStream
        | E::CannotDeleteStream
        | E::CannotDeleteStreamDirectory
        | E::CannotReadStreams
        | E::CannotCreateTopicsDirectory
        | E::CannotCreateTopicDirectory
        | E::CannotCreateTopicInfo
        | E::CannotUpdateTopicInfo
        | E::CannotOpenTopicInfo
        | E::CannotReadTopicInfo
        | E::CannotCreateTopic
        | E::CannotDeleteTopic
        | E::CannotDeleteTopicDirectory
        | E::CannotReadTopics
        | E::CannotCreatePartition
        | E::CannotCreatePartitionsDirectory
        | E::CannotCreatePartitionDirectory
        | E::CannotOpenPartitionLogFile
        | E::CannotReadPartitions
        | E::CannotDeletePartition
        | E::CannotDeletePartitionDirectory
        | E::CannotDeleteConsumerOffsetsDirectory
        | E::CannotDeleteConsumerOffsetFile
        | E::CannotCreateConsumerOffsetsDirectory
        | E::CannotReadConsumerOffsets
        | E::CannotOpenConsumerOffsetsFile
        | E::CannotCreateSegmentLogFile
        | E::CannotCreateSegmentIndexFile
        | E::CannotCreateSegmentTimeIndexFile
        | E::CannotSaveMessagesToSegment
        | E::CannotSaveIndexToSegment
        | E::CannotSaveTimeIndexToSegment
        | E::CannotAppendMessage
        | E::CannotReadMessage
        | E::CannotReadMessageId
        | E::CannotReadMessageState
        | E::CannotReadMessageTimestamp
        | E::CannotReadHeadersLength
        | E::CannotReadHeadersPayload
        | E::CannotReadMessageLength
        | E::CannotReadMessagePayload
        | E::CannotReadMessageChecksum
        | E::MissingIndex
        | E::BackgroundSendError
        | E::ProducerSendFailed
        | E::CannotCreateConsumerGroupInfo
        | E::CannotDeleteConsumerGroupInfo
        | E::MissingBaseOffsetRetainedMessageBatch
        | E::MissingLastOffsetDeltaRetainedMessageBatch
        | E::MissingMaxTimestampRetainedMessageBatch
        | E::MissingLengthRetainedMessageBatch
        | E::MissingPayloadRetainedMessageBatch
        | E::CannotReadBatchBaseOffset
        | E::CannotReadBatchLength
        | E::CannotReadLastOffsetDelta
        | E::CannotReadMaxTimestamp
        | E::CannotReadBatchPayload
        | E::InvalidConnectionString
        | E::SnapshotFileCompletionFailed
        | E::CannotSerializeResource
        | E::CannotDeserializeResource
        | E::CannotReadFile
        | E::CannotReadFileMetadata
        | E::CannotSeekFile
        | E::CannotAppendToFile
        | E::CannotWriteToFile
        | E::CannotOverwriteFile
        | E::CannotDeleteFile
        | E::CannotSyncFile
        | E::CannotReadIndexOffset
        | E::CannotReadIndexPosition
        | E::CannotReadIndexTimestamp
        | E::ShardNotFound
        | E::CannotBindToSocket
        | E::IoError => Code::Internal,
    }
}

/// True when the error means the connection it came over is no longer usable
/// (the pool then replaces it) rather than that Iggy refused the request.
pub fn is_connection_lost(error: &IggyError) -> bool {
    matches!(
        E::from(error),
        E::Disconnected
            | E::CannotEstablishConnection
            | E::StaleClient
            | E::TcpError
            | E::NotConnected
            | E::ClientShutdown
            | E::ConnectionClosed
            | E::EmptyResponse
            | E::Unauthenticated
            | E::InvalidSession
    )
}

/// True when a write may have reached Iggy although no answer came back: the
/// connection broke after the request was written, or Iggy timed out while
/// working on it. `NotConnected` and `CannotEstablishConnection` are not here:
/// in those cases nothing was sent.
pub fn is_outcome_unknown(error: &IggyError) -> bool {
    matches!(
        E::from(error),
        E::Disconnected
            | E::TcpError
            | E::ConnectionClosed
            | E::EmptyResponse
            | E::TransientNotCommitted
            | E::TaskTimeout
    )
}

/// A message for a client: the error's name in words, a hint where one helps,
/// and Iggy's numeric code.
pub fn describe(error: &IggyError) -> String {
    let name = error.as_string().replace('_', " ");
    let hint = match E::from(error) {
        E::InvalidTopicSize => {
            ": max_topic_size must be at least the server's segment size (1 GiB by default)"
        }
        E::TooManyPartitions => ": the topic would exceed the server's partition limit",
        E::TopicFull => ": the topic reached its max_topic_size",
        _ => "",
    };
    format!("Iggy: {name}{hint} (code {})", error.as_code())
}

/// Iggy's machine-readable name for the error, in the UPPER_SNAKE_CASE that
/// google.rpc.ErrorInfo reasons use, e.g. `STREAM_NAME_NOT_FOUND`.
pub fn reason(error: &IggyError) -> String {
    error.as_string().to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use iggy::prelude::Identifier;

    #[test]
    fn missing_resources_are_not_found() {
        let id = Identifier::default();
        assert_eq!(
            grpc_code(&IggyError::StreamIdNotFound(id.clone())),
            Code::NotFound
        );
        assert_eq!(
            grpc_code(&IggyError::TopicNameNotFound("t".into(), "s".into())),
            Code::NotFound
        );
    }

    #[test]
    fn taken_names_are_already_exists() {
        assert_eq!(
            grpc_code(&IggyError::StreamNameAlreadyExists("s".into())),
            Code::AlreadyExists
        );
    }

    #[test]
    fn lost_connections_are_unavailable_and_recycle_the_connection() {
        for error in [IggyError::Disconnected, IggyError::NotConnected] {
            assert_eq!(grpc_code(&error), Code::Unavailable);
            assert!(is_connection_lost(&error));
        }
        assert!(!is_connection_lost(&IggyError::InvalidStreamName));
    }

    #[test]
    fn only_errors_after_the_write_make_the_outcome_unknown() {
        assert!(is_outcome_unknown(&IggyError::Disconnected));
        assert!(!is_outcome_unknown(&IggyError::NotConnected));
        assert!(!is_outcome_unknown(&IggyError::CannotEstablishConnection));
    }

    #[test]
    fn descriptions_use_the_name_not_placeholder_fields() {
        let text = describe(&IggyError::StreamIdNotFound(Identifier::default()));
        assert_eq!(text, "Iggy: stream id not found (code 1009)");
    }

    #[test]
    fn reasons_are_upper_snake_case() {
        assert_eq!(
            reason(&IggyError::StreamNameAlreadyExists("s".into())),
            "STREAM_NAME_ALREADY_EXISTS"
        );
    }
}

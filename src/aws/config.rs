//! SDK configuration: region, credentials, endpoint and a retry policy sized
//! for provisioning (throttling is normal at payops' call volume).

use std::time::Duration;

use aws_config::retry::{RetryConfig, RetryMode};
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

#[derive(Clone, Debug)]
pub struct AwsSettings {
    pub region: String,
    pub profile: Option<String>,
    /// A custom endpoint (an emulator). `AWS_ENDPOINT_URL` is honoured by the
    /// SDK itself when this is not set.
    pub endpoint_url: Option<String>,
    pub max_attempts: u32,
    pub retry_mode: RetryMode,
}

/// The SDK's default of 3 attempts gives up during ordinary EC2
/// `RequestLimitExceeded` bursts, so provisioning gets more and a longer
/// back-off cap.
pub fn retry_config(max_attempts: u32, mode: RetryMode) -> RetryConfig {
    RetryConfig::standard()
        .with_retry_mode(mode)
        .with_max_attempts(max_attempts)
        .with_initial_backoff(Duration::from_millis(500))
        .with_max_backoff(Duration::from_secs(20))
}

pub async fn load(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .retry_config(retry_config(settings.max_attempts, settings.retry_mode))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(Duration::from_secs(120))
                .build(),
        );
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_have_room_for_provisioning_in_the_mode_asked_for() {
        for mode in [RetryMode::Standard, RetryMode::Adaptive] {
            let config = retry_config(10, mode);
            assert_eq!(config.mode(), mode);
            assert!(config.max_attempts() >= 10);
            assert_eq!(config.max_backoff(), Duration::from_secs(20));
        }
    }
}

//! One SDK client per service, each counting its calls.

use aws_config::SdkConfig;

use super::metrics::ApiCounter;

#[derive(Clone, Debug)]
pub struct Clients {
    pub sts: aws_sdk_sts::Client,
    pub kms: aws_sdk_kms::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub firehose: aws_sdk_firehose::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub iam: aws_sdk_iam::Client,
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sns: aws_sdk_sns::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub tagging: aws_sdk_resourcegroupstagging::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub apigateway: aws_sdk_apigateway::Client,
    pub acm: aws_sdk_acm::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub rds: aws_sdk_rds::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub wafv2: aws_sdk_wafv2::Client,
    pub guardduty: aws_sdk_guardduty::Client,
    pub config: aws_sdk_config::Client,
    pub xray: aws_sdk_xray::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub route53: aws_sdk_route53::Client,
    /// What every client above counts into.
    pub counter: ApiCounter,
}

impl Clients {
    /// `custom_endpoint`: emulators serve S3 on one host, so path-style
    /// addressing is needed there (real AWS uses virtual-hosted style).
    pub fn new(sdk: &SdkConfig, counter: &ApiCounter, custom_endpoint: bool) -> Self {
        macro_rules! client {
            ($krate:ident) => {
                $krate::Client::from_conf(
                    $krate::config::Builder::from(sdk)
                        .interceptor(counter.clone())
                        .build(),
                )
            };
        }
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(sdk)
                .interceptor(counter.clone())
                .force_path_style(custom_endpoint)
                .build(),
        );
        Self {
            sts: client!(aws_sdk_sts),
            kms: client!(aws_sdk_kms),
            ec2: client!(aws_sdk_ec2),
            events: client!(aws_sdk_eventbridge),
            firehose: client!(aws_sdk_firehose),
            logs: client!(aws_sdk_cloudwatchlogs),
            iam: client!(aws_sdk_iam),
            s3,
            dynamodb: client!(aws_sdk_dynamodb),
            sns: client!(aws_sdk_sns),
            sqs: client!(aws_sdk_sqs),
            ssm: client!(aws_sdk_ssm),
            tagging: client!(aws_sdk_resourcegroupstagging),
            lambda: client!(aws_sdk_lambda),
            elb: client!(aws_sdk_elasticloadbalancingv2),
            apigateway: client!(aws_sdk_apigateway),
            acm: client!(aws_sdk_acm),
            cloudwatch: client!(aws_sdk_cloudwatch),
            rds: client!(aws_sdk_rds),
            secrets: client!(aws_sdk_secretsmanager),
            wafv2: client!(aws_sdk_wafv2),
            guardduty: client!(aws_sdk_guardduty),
            config: client!(aws_sdk_config),
            xray: client!(aws_sdk_xray),
            autoscaling: client!(aws_sdk_autoscaling),
            route53: client!(aws_sdk_route53),
            counter: counter.attached(),
        }
    }
}

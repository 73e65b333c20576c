//! The batch instances' user data: a cloud-init config that installs the
//! settlement report (shipped inside the binary, like the functions' code),
//! a systemd timer that runs it nightly, and the CloudWatch agent with the
//! memory metric the group's memory policy scales on.
//!
//! The script is part of the template: a changed script is a changed user
//! data, so a new template version and an instance refresh.

use serde_json::json;

/// The nightly settlement report (tested in `lambda/tests`).
pub const SCRIPT: &str = include_str!("../../../batch/settlement_report.py");

/// Where the instance keeps the script.
const SCRIPT_PATH: &str = "/opt/payops/settlement_report.py";

/// The CloudWatch agent's namespace and the metric the memory policy tracks.
pub const AGENT_NAMESPACE: &str = "CWAgent";
pub const MEMORY_METRIC: &str = "mem_used_percent";

/// EC2's limit on user data, before base64.
#[cfg(test)]
const MAX_USER_DATA: usize = 16 * 1024;

/// What the report needs to know, passed as the service's environment.
pub struct Settings<'a> {
    pub table: &'a str,
    pub bucket: &'a str,
    pub region: &'a str,
    pub log_group: &'a str,
}

/// The CloudWatch agent's config: memory used, per group (the dimension the
/// scaling policy and alarm name), and the report's log to the env's group.
fn agent_config(s: &Settings<'_>) -> String {
    json!({
        "agent": { "metrics_collection_interval": 60 },
        "metrics": {
            "namespace": AGENT_NAMESPACE,
            "append_dimensions": { "AutoScalingGroupName": "${aws:AutoScalingGroupName}" },
            "aggregation_dimensions": [["AutoScalingGroupName"]],
            "metrics_collected": { "mem": { "measurement": [MEMORY_METRIC] } }
        },
        "logs": {
            "logs_collected": { "files": { "collect_list": [{
                "file_path": "/var/log/payops/settlement-report.log",
                "log_group_name": s.log_group,
                "log_stream_name": "{instance_id}"
            }] } }
        }
    })
    .to_string()
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The cloud-config document (before base64).
pub fn cloud_config(s: &Settings<'_>) -> String {
    let service = format!(
        "[Unit]\nDescription=payops nightly settlement report\n\n[Service]\nType=oneshot\n\
         Environment=AWS_REGION={region} TRANSACTIONS_TABLE={table} AUDIT_BUCKET={bucket}\n\
         ExecStart=/bin/sh -c '/usr/bin/python3 {SCRIPT_PATH} >> /var/log/payops/settlement-report.log 2>&1'\n",
        region = s.region,
        table = s.table,
        bucket = s.bucket,
    );
    // 02:00 UTC, after the day's last payments; Persistent catches up a run
    // missed while no instance was up.
    let timer = "[Unit]\nDescription=payops settlement report at 02:00 UTC\n\n[Timer]\n\
                 OnCalendar=*-*-* 02:00:00 UTC\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n";
    format!(
        "#cloud-config\n\
         packages:\n  - python3-boto3\n  - amazon-cloudwatch-agent\n\
         write_files:\n\
         \x20 - path: {SCRIPT_PATH}\n    permissions: '0755'\n    content: |\n{script}\n\
         \x20 - path: /etc/systemd/system/payops-settlement.service\n    content: |\n{service}\n\
         \x20 - path: /etc/systemd/system/payops-settlement.timer\n    content: |\n{timer}\n\
         \x20 - path: /opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json\n    content: |\n{agent}\n\
         runcmd:\n\
         \x20 - mkdir -p /var/log/payops\n\
         \x20 - /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json\n\
         \x20 - systemctl daemon-reload\n\
         \x20 - systemctl enable --now payops-settlement.timer\n",
        script = indent(SCRIPT),
        service = indent(&service),
        timer = indent(timer),
        agent = indent(&agent_config(s)),
    )
}

/// Base64 as EC2 wants it in a launch template.
pub fn user_data(s: &Settings<'_>) -> String {
    aws_smithy_types::base64::encode(cloud_config(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings<'static> {
        Settings {
            table: "payops-pr1-transactions",
            bucket: "payops-pr1-audit-123456789012-us-east-1",
            region: "us-east-1",
            log_group: "/payops/pr1/batch",
        }
    }

    #[test]
    fn the_user_data_fits_ec2s_limit_and_carries_the_script_and_its_timer() {
        let config = cloud_config(&settings());
        assert!(config.len() <= MAX_USER_DATA, "{} bytes", config.len());
        assert!(config.starts_with("#cloud-config\n"));
        assert!(config.contains("OnCalendar=*-*-* 02:00:00 UTC"));
        assert!(config.contains("TRANSACTIONS_TABLE=payops-pr1-transactions"));
        // Every line of the script is there, indented into the YAML block.
        for line in SCRIPT.lines().filter(|l| !l.trim().is_empty()) {
            assert!(config.contains(&format!("      {line}")), "{line}");
        }
        assert!(config.contains(MEMORY_METRIC));
        assert!(config.contains("\"AutoScalingGroupName\""));
    }

    #[test]
    fn a_changed_script_is_a_changed_user_data() {
        // The template compares user data, so a new script rolls a version.
        let a = user_data(&settings());
        let mut other = settings();
        other.table = "payops-pr2-transactions";
        assert_ne!(a, user_data(&other));
        assert_eq!(a, user_data(&settings()));
    }
}

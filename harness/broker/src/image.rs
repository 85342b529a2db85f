//! The locally built Apache Kafka image for the container backend, for machines whose Docker
//! engine cannot pull `apache/kafka` from a registry: a minimal Debian root file system with a
//! Java runtime, made by debootstrap, plus the cached jars of the pinned release. See
//! `harness/scripts/build-kafka-image.sh`.

use crate::BrokerError;
use crate::install::{KAFKA_VERSION, install_kafka, run_script};

const BUILD_SCRIPT: &str = include_str!("../../scripts/build-kafka-image.sh");
/// The image's entrypoint: `KAFKA_*` variables to `server.properties`, format, run.
const ENTRYPOINT: &str = include_str!("../../kafka/entrypoint.sh");

/// The image's reference, `cohort-kafka:<version>`, building it first when Docker does not
/// have it (idempotent; minutes the first time, for debootstrap).
pub(crate) fn kafka_image() -> Result<String, BrokerError> {
    let install = install_kafka()?;
    let out = run_script(
        "build-kafka-image",
        BUILD_SCRIPT,
        &[
            ("COHORT_KAFKA_LIBS", install.libs.as_os_str()),
            ("COHORT_KAFKA_VERSION", std::ffi::OsStr::new(KAFKA_VERSION)),
            ("COHORT_KAFKA_ENTRYPOINT", std::ffi::OsStr::new(ENTRYPOINT)),
            (
                "COHORT_KAFKA_LOG4J2",
                std::ffi::OsStr::new(crate::kafka_process::LOG4J2),
            ),
        ],
    )
    .map_err(|e| {
        BrokerError::Container(format!(
            "building the Apache Kafka {KAFKA_VERSION} image: {e}"
        ))
    })?;
    Ok(out.display().to_string())
}

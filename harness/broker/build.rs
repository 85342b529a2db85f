//! Reads the pinned Apache Kafka release from `harness/kafka/pom.xml` (the one place it is
//! written) into `COHORT_KAFKA_VERSION` for `cohort_testbroker::KAFKA_VERSION`.

fn main() {
    let pom = "../kafka/pom.xml";
    println!("cargo:rerun-if-changed={pom}");
    let text = std::fs::read_to_string(pom).unwrap_or_else(|e| panic!("reading {pom}: {e}"));
    let version = text
        .split("<kafka.version>")
        .nth(1)
        .and_then(|rest| rest.split("</kafka.version>").next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("{pom} names no <kafka.version>"));
    println!("cargo:rustc-env=COHORT_KAFKA_VERSION={version}");
}

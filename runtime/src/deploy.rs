//! The deployment commands: `manifests` (Kubernetes + KEDA YAML, Grafana dashboard, alert
//! rules), `asyncapi` and `provision`, behind the cargo feature `deploy`.
//!
//! They are tooling for whoever deploys the functions, not for running them: a function binary
//! built without the feature links none of it (nor its YAML writer). The commands still parse,
//! whatever their flags, and exit 2 with one line naming the feature, so a binary without them
//! says why instead of "unrecognized subcommand".

#[cfg(feature = "deploy")]
pub(crate) use crate::asyncapi::command as asyncapi;
#[cfg(feature = "deploy")]
pub(crate) use crate::manifests::{command as manifests, ManifestsArgs};
#[cfg(feature = "deploy")]
pub(crate) use crate::provision::{command as provision, ProvisionArgs};

#[cfg(not(feature = "deploy"))]
pub(crate) use absent::{asyncapi, manifests, provision, ManifestsArgs, ProvisionArgs};

#[cfg(not(feature = "deploy"))]
mod absent {
    use std::process::ExitCode;

    use crate::command::EXIT_CONFIG;
    use crate::config::Config;
    use crate::registry::Registry;

    /// Whatever `manifests` is given: the binary cannot act on it.
    #[derive(Debug, clap::Args)]
    pub(crate) struct ManifestsArgs {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        _given: Vec<String>,
    }

    /// Whatever `provision` is given: the binary cannot act on it.
    #[derive(Debug, clap::Args)]
    pub(crate) struct ProvisionArgs {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        _given: Vec<String>,
    }

    /// The line a compiled-out command prints; exit code 2.
    pub(super) fn needs_feature(command: &str) -> ExitCode {
        eprintln!("jetfn: {}", message(command));
        ExitCode::from(EXIT_CONFIG)
    }

    pub(super) fn message(command: &str) -> String {
        format!(
            "`{command}` needs the cargo feature `deploy` of jetfn, which this binary was built \
             without (jetfn = {{ features = [\"deploy\"] }})"
        )
    }

    pub(crate) fn manifests(_: &ManifestsArgs, _: &Config, _: &Registry) -> ExitCode {
        needs_feature("manifests")
    }

    pub(crate) fn provision(_: &ProvisionArgs, _: &Config, _: &Registry) -> ExitCode {
        needs_feature("provision")
    }

    pub(crate) fn asyncapi(_: &Config, _: &Registry) -> ExitCode {
        needs_feature("asyncapi")
    }
}

#[cfg(all(test, not(feature = "deploy")))]
mod tests {
    #[test]
    fn a_compiled_out_command_names_the_feature_it_needs() {
        let line = super::absent::message("manifests");
        assert!(line.contains("`manifests`"), "{line}");
        assert!(line.contains("cargo feature `deploy`"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }
}

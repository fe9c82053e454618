//! The top-level help lists the commands by group (domains, disks, ...)
//! rather than clap's one flat list.

use clap::Command;

/// The command groups, in display order, with the commands in each.
pub(crate) const GROUPS: &[(&str, &[&str])] = &[
    (
        "Domains",
        &[
            "create",
            "list",
            "shutdown",
            "reboot",
            "destroy",
            "pause",
            "unpause",
            "console",
            "vncviewer",
            "qmp",
            "monitor",
        ],
    ),
    (
        "Save and migration",
        &["save", "restore", "migrate", "migrate-receive"],
    ),
    ("Disks", &["block-attach", "block-detach", "block-list"]),
    ("CD-ROMs", &["cd-insert", "cd-eject"]),
    (
        "Networks",
        &["network-attach", "network-detach", "network-list"],
    ),
    (
        "PCI passthrough",
        &[
            "pci-list",
            "pci-assignable-add",
            "pci-assignable-remove",
            "pci-assignable-list",
            "assign",
            "release",
        ],
    ),
    ("Backends", &["backend"]),
    ("Benchmarks", &["bench"]),
    ("Host", &["host-check"]),
];

/// Replaces the flat command list of `cmd`'s help by the grouped one.
pub(crate) fn with_grouped_help(cmd: Command) -> Command {
    let width = GROUPS
        .iter()
        .flat_map(|(_, names)| names.iter())
        .map(|n| n.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for (group, names) in GROUPS {
        text.push_str(&format!("{group}:\n"));
        for name in *names {
            let about = cmd
                .find_subcommand(name)
                .and_then(|c| c.get_about())
                .map(|a| a.to_string())
                .unwrap_or_default();
            text.push_str(&format!("  {name:<width$}  {about}\n"));
        }
        text.push('\n');
    }
    let template = format!(
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{text}\
         Options:\n{{options}}{{after-help}}"
    );
    cmd.help_template(template)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_command_is_in_exactly_one_group() {
        let cmd = crate::cli::Cli::command();
        for sub in cmd.get_subcommands() {
            let name = sub.get_name();
            if name == "help" || sub.is_hide_set() {
                continue;
            }
            let n = GROUPS.iter().filter(|(_, ns)| ns.contains(&name)).count();
            assert_eq!(n, 1, "{name} is in {n} groups");
        }
        for (_, names) in GROUPS {
            for name in *names {
                assert!(
                    cmd.find_subcommand(name).is_some(),
                    "{name} is not a command"
                );
            }
        }
    }

    #[test]
    fn help_shows_groups_with_descriptions() {
        let mut cmd = with_grouped_help(crate::cli::Cli::command());
        let help = cmd.render_help().to_string();
        for (group, _) in GROUPS {
            assert!(help.contains(&format!("{group}:")), "{help}");
        }
        assert!(help.contains("host-check"));
        assert!(help.contains("Start a domain from an xl-style config file"));
    }
}

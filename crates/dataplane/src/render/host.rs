//! The fixed chains every table has: the base hook chains, anti-spoofing, the
//! workload-to-host path, the conntrack head, the policy generation, host endpoint dispatch.

use super::*;

impl Renderer {
    /// The raw prerouting chain: a packet from a workload interface must
    /// carry one of the endpoint's own source addresses (or an IPv6
    /// link-local or unspecified one, for neighbour discovery), checked
    /// against the `ifname . addr` sets before conntrack sees it. An
    /// interface without an endpoint has no pairs, so all of it drops.
    pub(super) fn anti_spoofing(&mut self, endpoints: &[&Interface]) {
        let link_local: IpNet = "fe80::/10".parse().unwrap_or_default();
        let unspecified: IpNet = "::/128".parse().unwrap_or_default();
        for (family, set, addr_type) in [
            (Family::V4, WL_SOURCES_V4_SET, SetType::Ipv4Addr),
            (Family::V6, WL_SOURCES_V6_SET, SetType::Ipv6Addr),
        ] {
            let mut elems = Vec::new();
            for iface in endpoints {
                let mut nets: Vec<IpNet> = iface
                    .sources
                    .iter()
                    .filter(|n| Family::of(n) == family)
                    .copied()
                    .collect();
                if family == Family::V6 {
                    nets.extend([link_local, unspecified]);
                }
                for net in IpNet::aggregate(&nets) {
                    elems.push(Expression::Named(NamedExpression::Concat(vec![
                        s(&iface.name),
                        prefix(&net),
                    ])));
                }
            }
            self.objects.push(NfListObject::Set(Box::new(Set {
                family: TABLE_FAMILY,
                table: TABLE_NAME.into(),
                name: set.into(),
                set_type: SetTypeValue::Concatenated(vec![SetType::Ifname, addr_type].into()),
                flags: Some(HashSet::from([SetFlag::Interval])),
                elem: (!elems.is_empty()).then(|| elems.into()),
                ..Set::default()
            })));
        }
        self.objects.push(base_chain_object(
            PREROUTING_CHAIN,
            NfHook::Prerouting,
            PREROUTING_PRIORITY,
        ));
        let wildcard = format!("{WORKLOAD_IFACE_PREFIX}*");
        for (family, set) in [
            (Family::V4, WL_SOURCES_V4_SET),
            (Family::V6, WL_SOURCES_V6_SET),
        ] {
            self.rule(
                PREROUTING_CHAIN,
                vec![
                    matches(meta(MetaKey::Iifname), Operator::EQ, s(&wildcard)),
                    matches(meta(MetaKey::Nfproto), Operator::EQ, s(family.nfproto())),
                    matches(
                        Expression::Named(NamedExpression::Concat(vec![
                            meta(MetaKey::Iifname),
                            payload(family.proto(), "saddr"),
                        ])),
                        Operator::NEQ,
                        s(&format!("@{set}")),
                    ),
                    counter(),
                    Statement::Drop(None),
                ],
                format!(
                    "anti-spoofing: {} source not of the sending workload",
                    family.nfproto()
                ),
            );
        }
    }

    pub(super) fn base_chain(
        &mut self,
        endpoints: &[(&str, &std::sync::Arc<calico_policy::EndpointProgram>)],
        opts: &HostOptions,
    ) {
        self.objects.push(base_chain_object(
            FORWARD_CHAIN,
            NfHook::Forward,
            FORWARD_PRIORITY,
        ));
        self.conntrack_head(FORWARD_CHAIN, true);
        let wildcard = format!("{WORKLOAD_IFACE_PREFIX}*");
        let known = format!("@{KNOWN_IFACES_SET}");
        for key in [MetaKey::Iifname, MetaKey::Oifname] {
            self.rule(
                FORWARD_CHAIN,
                vec![
                    matches(meta(key), Operator::EQ, s(&wildcard)),
                    matches(meta(key), Operator::NEQ, s(&known)),
                    counter(),
                    Statement::Drop(None),
                ],
                format!(
                    "fail closed: {} workload interface without an endpoint",
                    if key == MetaKey::Iifname {
                        "from"
                    } else {
                        "to"
                    }
                ),
            );
        }
        self.workload_tunnel_drops(FORWARD_CHAIN, opts);
        // Sender's egress before receiver's ingress, as in Felix; one
        // verdict-map lookup each, whatever the number of endpoints.
        let ifaces: Vec<&str> = endpoints.iter().map(|(i, _)| *i).collect();
        if let Some(d) = dispatch(MetaKey::Iifname, &ifaces, FROM_ENDPOINT_PREFIX) {
            self.rule(
                FORWARD_CHAIN,
                vec![d],
                "egress of the sending workload".into(),
            );
        }
        if let Some(d) = dispatch(MetaKey::Oifname, &ifaces, TO_ENDPOINT_PREFIX) {
            self.rule(
                FORWARD_CHAIN,
                vec![d],
                "ingress of the receiving workload".into(),
            );
        }
        self.remember_generation(FORWARD_CHAIN);
    }

    /// Tunnel packets (VXLAN to our port, IP-in-IP) sent by a workload are
    /// dropped: once masqueraded they would look like they came from a
    /// Calico host (upstream drops them in every from-workload chain).
    pub(super) fn workload_tunnel_drops(&mut self, chain: &str, opts: &HostOptions) {
        let wildcard = format!("{WORKLOAD_IFACE_PREFIX}*");
        if let Some(port) = opts.vxlan_port {
            self.rule(
                chain,
                vec![
                    matches(meta(MetaKey::Iifname), Operator::EQ, s(&wildcard)),
                    matches(
                        payload("udp", "dport"),
                        Operator::EQ,
                        Expression::Number(u32::from(port)),
                    ),
                    counter(),
                    Statement::Drop(None),
                ],
                "VXLAN from a workload".into(),
            );
        }
        self.rule(
            chain,
            vec![
                matches(meta(MetaKey::Iifname), Operator::EQ, s(&wildcard)),
                matches(meta(MetaKey::L4proto), Operator::EQ, Expression::Number(4)),
                counter(),
                Statement::Drop(None),
            ],
            "IP-in-IP from a workload".into(),
        );
    }

    /// The input chain: tunnels only from Calico hosts, then the fast path,
    /// then workload-to-host traffic (to [`WL_TO_HOST_CHAIN`]), then host
    /// endpoints' ingress with their failsafes.
    pub(super) fn input_chain(
        &mut self,
        workloads: &[(&str, &std::sync::Arc<calico_policy::EndpointProgram>)],
        hosts: &[(&str, &std::sync::Arc<calico_policy::EndpointProgram>)],
        opts: &HostOptions,
    ) {
        let chain = INPUT_CHAIN;
        self.objects
            .push(base_chain_object(chain, NfHook::Input, FORWARD_PRIORITY));
        for (v6, set, addr_type) in [
            (false, CALICO_HOSTS_V4_SET, SetType::Ipv4Addr),
            (true, CALICO_HOSTS_V6_SET, SetType::Ipv6Addr),
        ] {
            let elems: Vec<Expression<'static>> = opts
                .calico_hosts
                .iter()
                .filter(|a| a.is_ipv6() == v6)
                .map(|a| s(&a.to_string()))
                .collect();
            self.objects.push(NfListObject::Set(Box::new(Set {
                family: TABLE_FAMILY,
                table: TABLE_NAME.into(),
                name: set.into(),
                set_type: SetTypeValue::Single(addr_type),
                elem: (!elems.is_empty()).then(|| elems.into()),
                ..Set::default()
            })));
        }
        for family in [Family::V4, Family::V6] {
            let set = match family {
                Family::V4 => CALICO_HOSTS_V4_SET,
                Family::V6 => CALICO_HOSTS_V6_SET,
            };
            let not_a_host = || {
                matches(
                    payload(family.proto(), "saddr"),
                    Operator::NEQ,
                    s(&format!("@{set}")),
                )
            };
            if let Some(port) = opts.vxlan_port {
                self.rule(
                    chain,
                    vec![
                        matches(meta(MetaKey::Nfproto), Operator::EQ, s(family.nfproto())),
                        matches(
                            payload("udp", "dport"),
                            Operator::EQ,
                            Expression::Number(u32::from(port)),
                        ),
                        not_a_host(),
                        counter(),
                        Statement::Drop(None),
                    ],
                    "VXLAN from a host that is not a Calico host".into(),
                );
            }
            if opts.ipip && family == Family::V4 {
                self.rule(
                    chain,
                    vec![
                        matches(meta(MetaKey::Nfproto), Operator::EQ, s(family.nfproto())),
                        matches(meta(MetaKey::L4proto), Operator::EQ, Expression::Number(4)),
                        not_a_host(),
                        counter(),
                        Statement::Drop(None),
                    ],
                    "IP-in-IP from a host that is not a Calico host".into(),
                );
            }
        }
        self.conntrack_head(chain, false);
        self.rule(
            chain,
            vec![
                matches(
                    meta(MetaKey::Iifname),
                    Operator::EQ,
                    s(&format!("{WORKLOAD_IFACE_PREFIX}*")),
                ),
                Statement::Goto(JumpTarget {
                    target: Cow::Borrowed(WL_TO_HOST_CHAIN),
                }),
            ],
            "from a workload to this host".into(),
        );
        self.workload_to_host(workloads, opts);
        if !hosts.is_empty() {
            self.host_endpoint_dispatch(chain, hosts, opts, Direction::Ingress);
        }
        self.remember_generation(chain);
    }

    /// Workload-to-host traffic: router advertisements and redirects drop,
    /// what a workload needs to talk to its gateway at all (neighbour
    /// discovery, MLD) passes, everything else goes through the workload's
    /// egress policy and then `DefaultEndpointToHostAction`.
    pub(super) fn workload_to_host(
        &mut self,
        workloads: &[(&str, &std::sync::Arc<calico_policy::EndpointProgram>)],
        opts: &HostOptions,
    ) {
        let chain = WL_TO_HOST_CHAIN;
        self.chain(chain);
        let types = |list: &[u8]| {
            Expression::Named(NamedExpression::Set(
                list.iter()
                    .map(|t| SetItem::Element(Expression::Number(u32::from(*t))))
                    .collect(),
            ))
        };
        self.rule(
            chain,
            vec![
                matches(
                    payload("icmpv6", "type"),
                    Operator::EQ,
                    types(&ICMPV6_FROM_WORKLOAD_DROPPED),
                ),
                counter(),
                Statement::Drop(None),
            ],
            "router advertisement or redirect from a workload".into(),
        );
        self.rule(
            chain,
            vec![
                matches(
                    payload("icmp", "type"),
                    Operator::EQ,
                    Expression::Number(u32::from(ICMP_REDIRECT)),
                ),
                counter(),
                Statement::Drop(None),
            ],
            "ICMP redirect from a workload".into(),
        );
        self.rule(
            chain,
            vec![
                matches(
                    payload("icmpv6", "type"),
                    Operator::EQ,
                    types(&ICMPV6_TO_HOST),
                ),
                Statement::Accept(None),
            ],
            "neighbour discovery and MLD to the host".into(),
        );
        self.rule(
            chain,
            vec![
                matches(
                    meta(MetaKey::Iifname),
                    Operator::NEQ,
                    s(&format!("@{KNOWN_IFACES_SET}")),
                ),
                counter(),
                Statement::Drop(None),
            ],
            "fail closed: workload interface without an endpoint".into(),
        );
        self.workload_tunnel_drops(chain, opts);
        // The egress chain drops what its policy denies and returns what
        // it allows.
        let ifaces: Vec<&str> = workloads.iter().map(|(i, _)| *i).collect();
        if let Some(d) = dispatch(MetaKey::Iifname, &ifaces, FROM_ENDPOINT_PREFIX) {
            self.rule(chain, vec![d], "egress of the sending workload".into());
        }
        match opts.endpoint_to_host {
            EndpointToHostAction::Drop => self.rule(
                chain,
                vec![counter(), Statement::Drop(None)],
                "DefaultEndpointToHostAction Drop".into(),
            ),
            EndpointToHostAction::Accept => {
                self.remember_generation(chain);
                self.rule(
                    chain,
                    vec![Statement::Accept(None)],
                    "DefaultEndpointToHostAction Accept".into(),
                );
            }
            EndpointToHostAction::Return => self.rule(
                chain,
                vec![Statement::Return(None)],
                "DefaultEndpointToHostAction Return: other tables decide".into(),
            ),
        }
    }

    /// The first rules of a base chain: established flows allowed under the
    /// current policy generation pass; invalid ones drop (when asked);
    /// replies of flows allowed under an older policy pass, since their
    /// original direction is judged again below and a flow the new policy
    /// denies stops there.
    pub(super) fn conntrack_head(&mut self, chain: &str, drop_invalid: bool) {
        let established = || {
            matches(
                ct("state"),
                Operator::IN,
                Expression::List(vec![s("established"), s("related")]),
            )
        };
        self.rule(
            chain,
            vec![jump(GEN_FAST_CHAIN)],
            "fast path: flow allowed under the current policy".into(),
        );
        if drop_invalid {
            self.rule(
                chain,
                vec![
                    matches(ct("state"), Operator::IN, s("invalid")),
                    counter(),
                    Statement::Drop(None),
                ],
                "invalid conntrack state".into(),
            );
        }
        self.rule(
            chain,
            vec![
                established(),
                matches(ct("direction"), Operator::EQ, s("reply")),
                Statement::Accept(None),
            ],
            "reply of an established flow".into(),
        );
    }

    /// The two one-rule chains that hold the policy generation, so a new
    /// generation rewrites them alone: [`GEN_FAST_CHAIN`] accepts an
    /// established flow allowed under it, [`GEN_REMEMBER_CHAIN`] stamps it
    /// on a flow every endpoint chain allowed.
    pub(super) fn generation_chains(&mut self) {
        self.chain(GEN_FAST_CHAIN);
        self.rule(
            GEN_FAST_CHAIN,
            vec![
                matches(
                    ct("state"),
                    Operator::IN,
                    Expression::List(vec![s("established"), s("related")]),
                ),
                matches(
                    Expression::BinaryOperation(Box::new(BinaryOperation::AND(
                        ct("mark"),
                        Expression::Number(CT_GENERATION_MASK),
                    ))),
                    Operator::EQ,
                    Expression::Number(self.generation),
                ),
                Statement::Accept(None),
            ],
            "established flow allowed under the current policy generation".into(),
        );
        self.chain(GEN_REMEMBER_CHAIN);
        self.rule(
            GEN_REMEMBER_CHAIN,
            vec![Statement::Mangle(Mangle {
                key: ct("mark"),
                value: Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![
                    Expression::BinaryOperation(Box::new(BinaryOperation::AND(
                        ct("mark"),
                        Expression::Number(!CT_GENERATION_MASK),
                    ))),
                    Expression::Number(self.generation),
                ]))),
            })],
            "stamp the current policy generation".into(),
        );
    }

    /// The last rule of a base chain, reached only by what every endpoint
    /// chain allowed: the flow is good under this policy generation.
    pub(super) fn remember_generation(&mut self, chain: &str) {
        self.rule(
            chain,
            vec![jump(GEN_REMEMBER_CHAIN)],
            "remember the policy generation the flow was allowed under".into(),
        );
    }

    /// The output chain, present with host endpoints: failsafe ports and
    /// the tunnel to Calico hosts pass, then each host interface's egress.
    pub(super) fn output_chain(
        &mut self,
        hosts: &[(&str, &std::sync::Arc<calico_policy::EndpointProgram>)],
        opts: &HostOptions,
    ) {
        self.objects.push(base_chain_object(
            OUTPUT_CHAIN,
            NfHook::Output,
            FORWARD_PRIORITY,
        ));
        self.conntrack_head(OUTPUT_CHAIN, false);
        self.host_endpoint_dispatch(OUTPUT_CHAIN, hosts, opts, Direction::Egress);
        self.remember_generation(OUTPUT_CHAIN);
    }

    /// Host endpoint policing in a base chain: failsafe ports and the VXLAN
    /// tunnel between Calico hosts always pass (the tunnel's sources were
    /// checked above), then each host interface's program.
    pub(super) fn host_endpoint_dispatch(
        &mut self,
        chain: &str,
        hosts: &[(&str, &std::sync::Arc<calico_policy::EndpointProgram>)],
        opts: &HostOptions,
        direction: Direction,
    ) {
        let (key, failsafe, prefix, what) = match direction {
            Direction::Ingress => (
                MetaKey::Iifname,
                &opts.failsafe_inbound,
                TO_ENDPOINT_PREFIX,
                "ingress",
            ),
            Direction::Egress => (
                MetaKey::Oifname,
                &opts.failsafe_outbound,
                FROM_ENDPOINT_PREFIX,
                "egress",
            ),
        };
        for proto in [L4Protocol::Tcp, L4Protocol::Udp] {
            let ports: Vec<PortRange> = failsafe
                .iter()
                .filter(|f| f.protocol == proto)
                .map(|f| PortRange {
                    min: f.port,
                    max: f.port,
                })
                .collect();
            if !ports.is_empty() {
                self.rule(
                    chain,
                    vec![
                        matches(
                            payload(proto.name(), "dport"),
                            Operator::EQ,
                            port_set(&ports),
                        ),
                        Statement::Accept(None),
                    ],
                    format!("failsafe {} ports", proto.name()),
                );
            }
        }
        if let Some(port) = opts.vxlan_port {
            self.rule(
                chain,
                vec![
                    matches(
                        payload("udp", "dport"),
                        Operator::EQ,
                        Expression::Number(u32::from(port)),
                    ),
                    Statement::Accept(None),
                ],
                "VXLAN between hosts".into(),
            );
        }
        let ifaces: Vec<&str> = hosts.iter().map(|(i, _)| *i).collect();
        if let Some(d) = dispatch(key, &ifaces, prefix) {
            self.rule(chain, vec![d], format!("{what} of the host endpoint"));
        }
    }
}

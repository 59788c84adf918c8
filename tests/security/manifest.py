"""Which tests enforce each guarantee of SECURITY.md.

Keys are the guarantee ids (``G-…``) defined in bold in SECURITY.md; values are pytest node
ids (``path::function``, without parameters). ``test_manifest.py`` fails when a guarantee has
no test, when an id here is not in SECURITY.md, or when a named test does not exist.
"""

from __future__ import annotations

_ID = "tests/security/test_identity_attacks.py::"
_FUZZ = "tests/security/test_fuzz.py::"
_FAULTS = "tests/security/test_faults.py::"
_CRASH = "tests/security/test_crash.py::"
_CONC = "tests/security/test_concurrency.py::"
_APP = "tests/server/test_app.py::"
_HTTP = "tests/server/test_http.py::"
_SECRET = "tests/server/test_secret_tools.py::"
_TOKENS = "tests/tools/test_tokens.py::"
_MAIL = "tests/mail/test_email_tools.py::"
_MESSAGE = "tests/mail/test_mail_message.py::"
_APPROVALS = "tests/server/test_approvals_mcp.py::"
_VAULT = "tests/storage/test_vault_storage.py::"
_TVAULT = "tests/tools/test_vault.py::"
_KEYS = "tests/security/test_keys_at_rest.py::"
_PGC = "tests/storage/test_store_contract.py::"
_PGS = "tests/storage/test_pg_selection.py::"
_ORG = "tests/security/test_organizations.py::"
_ORGC = "tests/cli/test_owner_cli.py::"

GUARANTEES: dict[str, tuple[str, ...]] = {
    # -- a prompt-injected agent ------------------------------------------------------------
    "G-AGENT-1": (
        _ID + "test_tool_arguments_cannot_choose_the_agent",
        _ID + "test_forged_request_metadata_cannot_choose_the_agent",
        _ID + "test_a_second_initialize_over_stdio_does_not_change_the_agent",
        _ID + "test_over_http_the_agent_is_the_token_subject_and_nothing_else",
        _HTTP + "test_a_session_cannot_change_hands",
        _FUZZ + "test_every_tool_survives_hostile_arguments",
    ),
    "G-AGENT-2": (
        _APP + "test_missing_scope_is_refused_and_recorded_as_denied",
        _HTTP + "test_the_token_scope_narrows_what_a_call_may_do",
        _ID + "test_another_agents_secret_is_refused_and_recorded",
        _SECRET + "test_a_missing_use_scope_is_refused",
    ),
    "G-AGENT-3": (
        _ID + "test_audit_query_never_shows_another_agents_entries",
        _ID + "test_audit_prove_refuses_another_agents_entry",
        _ID + "test_a_relabelled_entry_is_not_served_to_the_wrong_agent",
        _APP + "test_agent_sees_only_its_own_entries",
    ),
    "G-AGENT-4": (
        _ID + "test_another_agents_secret_is_refused_and_recorded",
        _SECRET + "test_secret_get_reveals_only_with_the_read_scope",
        _SECRET + "test_a_host_outside_the_allowlist_is_refused_and_nothing_is_sent",
        _SECRET + "test_a_redirect_to_another_host_is_not_followed",
        _SECRET + "test_http_request_injects_the_secret_and_redacts_the_echo",
        _SECRET + "test_the_canary_secret_never_leaks",
        _FUZZ + "test_every_tool_survives_hostile_arguments",
        # issue 16: the attacks of a use-only agent with a reflecting allowed host
        _SECRET + "test_the_cut_of_an_oversized_reflection_is_no_prefix_oracle",
        _TVAULT + "test_a_capped_body_is_cut_at_the_same_place_whatever_the_tail_holds",
        _SECRET + "test_an_undecodable_content_encoding_never_returns_the_value",
        _SECRET + "test_an_agent_may_not_set_accept_encoding",
        _SECRET + "test_percent_encoded_and_json_escaped_reflections_are_redacted",
        _TVAULT + "test_redactor_matches_every_character_in_any_covered_form",
        _SECRET + "test_a_guessed_value_is_refused_recorded_and_blocks_the_agent",
        _SECRET + "test_the_url_returned_is_the_one_the_agent_wrote",
        _SECRET + "test_the_rate_limit_refuses_and_records",
        _SECRET + "test_an_allowed_host_with_the_wrong_port_or_scheme_is_refused",
        _SECRET + "test_a_readable_value_written_into_the_url_is_refused_not_recorded",
    ),
    "G-AGENT-5": (
        _APP + "test_revoked_agent_is_refused_on_the_next_call",
        _APP + "test_a_replaced_charter_is_refused_on_the_next_call",
        _APP + "test_an_expired_charter_is_refused",
        _APPROVALS + "test_lockdown_stops_a_running_server_on_the_next_call",
        _HTTP + "test_a_revoked_agent_or_token_is_refused_on_the_next_request",
    ),
    "G-AGENT-6": (
        _MESSAGE + "test_header_injection_in_any_address_field_is_refused",
        _MESSAGE + "test_header_injection_in_subject_reply_id_and_attachment_is_refused",
        _MAIL + "test_recipient_patterns_narrow_every_recipient",
        _MAIL + "test_recipient_patterns_hold_reply_to_too",
        _MAIL + "test_rate_limit_is_a_recorded_denial_per_rolling_hour",
        _MAIL + "test_the_local_directory_follows_revocations_and_new_charters",
        _FUZZ + "test_injection_strings_in_every_string_argument",
    ),
    "G-AGENT-7": (
        _APPROVALS + "test_client_decline_or_cancel_refuses_and_records",
        _APPROVALS + "test_owner_approval_runs_only_the_exact_arguments_once",
        _APPROVALS + "test_an_approval_not_signed_by_the_owner_runs_nothing",
        _APPROVALS + "test_owner_sees_what_a_secret_http_request_would_do",
        _APPROVALS + "test_client_elicitation_shows_what_a_secret_http_request_would_do",
    ),
    # -- another local process or user --------------------------------------------------------
    "G-HOME-1": (
        _FAULTS + "test_a_home_open_to_other_users_is_refused",
        _FAULTS + "test_a_new_home_is_private",
    ),
    "G-HSM-1": (
        "tests/keys/test_pkcs11.py::test_init_agent_serve_verify_with_keys_in_the_token",
        "tests/keys/test_pkcs11.py::test_private_keys_are_sensitive_and_never_extractable",
        "tests/keys/test_pkcs11.py::test_seed_scan_finds_key_files_of_a_file_home",
    ),
    "G-HSM-2": (
        "tests/keys/test_pkcs11.py::test_wrong_pin_is_one_line_and_makes_nothing",
        "tests/keys/test_pkcs11.py::test_missing_module_and_missing_token_are_one_line",
        "tests/keys/test_pkcs11.py::test_a_home_whose_pin_changed_fails_cleanly_on_open",
    ),
    # -- someone who copies the database ------------------------------------------------------
    "G-DATA-1": (
        _SECRET + "test_the_canary_secret_never_leaks",
        _VAULT + "test_put_get_keeps_versions_and_encrypts",
        _VAULT + "test_swapping_ciphertexts_between_rows_fails_to_decrypt",
        _TOKENS + "test_token_issue_tool_records_the_token_facts_never_the_token",
        _MAIL + "test_mail_password_lives_only_in_the_vault",
        _ID + "test_another_agents_secret_is_refused_and_recorded",
    ),
    "G-DATA-2": (
        "tests/server/test_telemetry.py::test_a_refused_call_is_an_error_span_with_its_denied_entry",
    ),
    # -- an admin who edits the ledger --------------------------------------------------------
    "G-LEDGER-1": (
        _ID + "test_the_database_refuses_updates_and_deletes_of_the_ledger",
        "tests/storage/test_pg_schema.py::test_append_only_tables_refuse_update_delete_and_truncate",
    ),
    "G-LEDGER-2": (
        _ID + "test_an_edited_entry_fails_at_its_seq",
        _ID + "test_an_entry_rewritten_in_non_canonical_form_fails_at_its_seq",
        _ID + "test_a_deleted_entry_fails_at_its_seq",
        _ID + "test_an_inserted_entry_fails_at_its_seq",
        _ID + "test_reordered_entries_fail_at_the_first_moved_seq",
        _ID + "test_an_entry_re_signed_with_a_foreign_key_fails_at_its_seq",
        _ID + "test_a_foreign_signature_under_the_agents_key_id_fails_at_its_seq",
        _ID + "test_an_entry_by_a_revoked_agent_fails_at_its_seq",
        _ID + "test_an_entry_under_an_expired_charter_fails_at_its_seq",
        _ID + "test_an_entry_naming_another_actor_fails_at_its_seq",
        _ID + "test_an_owner_event_signed_by_an_agent_key_is_not_an_owner_event",
        _ID + "test_an_edited_column_fails_at_its_seq",
        _ID + "test_a_relabelled_entry_is_not_served_to_the_wrong_agent",
    ),
    "G-LEDGER-3": (
        _ID + "test_a_tail_cut_only_from_the_ledger_table_fails_verification",
        _ID + "test_a_kept_checkpoint_detects_a_cut_tail",
        _ID + "test_a_kept_checkpoint_detects_history_rewritten_with_the_homes_own_keys",
    ),
    "G-WITNESS-1": (
        "tests/witness/test_witness_protocol.py::test_a_fork_is_never_cosigned_and_the_state_never_goes_back",
        "tests/witness/test_witness_crash.py::test_kill_9_never_makes_a_witness_cosign_two_roots_of_one_size",
        "tests/witness/test_witnessing.py::test_a_copy_that_grows_differently_gets_no_cosignature_and_fails_the_policy",
        "tests/witness/test_witnessing.py::test_an_unreachable_witness_never_blocks_a_tool_call",
    ),
    "G-EXPORT-1": (
        "tests/test_auditor.py::test_an_edited_charter_file_is_reported",
        "tests/test_auditor.py::test_an_unregistered_charter_file_is_reported",
        "tests/test_auditor.py::test_a_keys_file_that_disagrees_with_the_ledger_is_reported",
        "tests/test_auditor.py::test_a_log_vkey_that_disagrees_with_the_ledger_is_reported",
        "tests/test_auditor.py::test_a_partial_last_line_is_reported_not_parsed",
    ),
    "G-CHARTER-1": (
        _ID + "test_an_edited_charter_row_is_refused_by_the_server",
        _ID + "test_a_charter_re_signed_by_another_key_is_refused",
        _ID + "test_pointing_an_agent_at_another_agents_charter_is_refused",
        _ID + "test_widening_the_charter_inside_the_ledger_fails_verification",
        _ID + "test_un_revoking_an_agent_in_the_database_is_caught_by_verify",
    ),
    # -- a malicious MCP client ---------------------------------------------------------------
    "G-INPUT-1": (
        _FUZZ + "test_every_tool_survives_hostile_arguments",
        _FUZZ + "test_a_call_the_ledger_cannot_quote_is_still_recorded",
        _FUZZ + "test_an_out_of_range_cursor_is_a_clean_refusal",
    ),
    "G-INPUT-2": (
        _FUZZ + "test_injection_strings_in_every_string_argument",
        _ID + "test_audit_query_never_shows_another_agents_entries",
        _MESSAGE + "test_header_injection_in_any_address_field_is_refused",
    ),
    "G-INPUT-3": (
        _FUZZ + "test_malformed_json_rpc_over_stdio_does_not_stop_the_server",
        "tests/server/test_stdio.py::test_every_stdout_line_is_json_rpc",
        "tests/server/test_stdio.py::test_lines_the_sdk_cannot_read_get_an_error_and_the_server_goes_on",
    ),
    "G-HOOK-1": (
        "tests/tools/test_hooks_events.py::test_malformed_payloads_get_a_clear_one_line_error",
        "tests/tools/test_hooks_events.py::test_a_vault_value_never_appears_in_a_summary",
        "tests/tools/test_hooks_events.py::test_a_summary_is_bounded_and_always_recordable",
        "tests/tools/test_hooks_rules.py::test_bash_rules",
        "tests/tools/test_hooks_rules.py::test_a_command_no_reading_is_safe_for_is_denied_never_allowed",
        "tests/tools/test_hooks_rules.py::test_a_call_without_the_tested_field_is_denied_never_allowed",
    ),
    "G-HOOK-2": (
        "tests/tools/test_hooks_record.py::test_a_session_is_recorded_intent_before_outcome_and_verifies",
        "tests/tools/test_hooks_record.py::test_hostile_pre_tool_use_fails_closed_with_one_line",
        "tests/tools/test_hooks_record.py::test_huge_payload_fails_closed_without_reading_it_all",
        "tests/tools/test_hooks_record.py::test_revoked_agent_fails_closed_and_the_refusal_is_recorded",
        "tests/tools/test_hooks_record.py::test_unknown_agent_or_home_fails_closed",
        "tests/tools/test_hooks_record.py::test_deny_rule_denies_rm_and_records_it_and_allows_ls",
        "tests/tools/test_hooks_record.py::test_vault_values_never_reach_the_ledger",
        "tests/cli/test_hook_fast.py::test_a_hook_that_cannot_record_still_fails_closed_on_the_fast_path",
    ),
    "G-CANON-1": (
        _ID + "test_canonical_bytes_equal_rfc8785_on_tricky_strings",
        _ID + "test_canonical_key_order_is_by_utf16_code_units_like_rfc8785",
        _ID + "test_canonical_bytes_equal_rfc8785_on_generated_values",
        _ID + "test_values_outside_the_canonical_domain_are_refused",
    ),
    # -- a network attacker (HTTP) ------------------------------------------------------------
    "G-HTTP-1": (
        _HTTP + "test_mcp_needs_a_valid_token_for_this_server",
        _HTTP + "test_foreign_host_headers_are_refused",
        _HTTP + "test_introspection_needs_authentication_and_reports_state",
        _HTTP + "test_serve_refuses_unsafe_or_confused_flags",
        _FUZZ + "test_http_rejects_oversized_and_malformed_requests_cleanly",
    ),
    "G-TOKEN-1": (
        _TOKENS + "test_alg_none_is_refused",
        _TOKENS + "test_hs256_signed_with_the_public_key_is_refused",
        _TOKENS + "test_unknown_kid_is_refused",
        _TOKENS + "test_expired_token_is_refused",
        _TOKENS + "test_nbf_in_the_future_is_refused",
        _TOKENS + "test_wrong_audience_is_refused",
        _TOKENS + "test_wrong_issuer_is_refused",
        _TOKENS + "test_missing_claims_are_refused",
        _TOKENS + "test_tampered_payload_is_refused",
        _TOKENS + "test_token_of_a_revoked_agent_is_refused",
        "tests/server/test_success_effects.py::test_a_token_whose_intent_and_outcome_were_not_recorded_never_verifies",
        "tests/server/test_success_effects.py::test_a_token_is_issued_in_one_transaction_with_its_intent_and_outcome",
        "tests/server/test_success_effects.py::test_a_revoked_agent_is_refused_at_its_intent_once",
        _TOKENS + "test_revoked_jti_is_refused",
        _TOKENS + "test_replacing_the_charter_retires_its_tokens",
        _TOKENS + "test_signed_but_never_issued_token_is_refused",
        _TOKENS + "test_scope_escalation_is_refused",
        _TOKENS + "test_a_token_cannot_mint_a_broader_token",
        # the HTTP server's cache of verified tokens (issue 26): every change still refuses
        "tests/server/test_http_token_cache.py::test_a_cached_token_is_refused_at_its_next_use_after_a_change",
        "tests/server/test_http_token_cache.py::test_a_cached_token_stops_with_its_parent_agent",
        "tests/server/test_http_token_cache.py::test_only_the_exact_text_hits_and_for_its_audience_only",
        "tests/server/test_http_token_cache.py::test_without_a_fixed_issuer_the_homes_issuer_is_checked_every_time",
        _ID + "test_over_http_the_agent_is_the_token_subject_and_nothing_else",
        # a token wider than its charter by glob semantics (issue 16.6)
        "tests/test_scopes.py::test_glob_within_agrees_with_brute_force",
        "tests/test_scopes.py::test_a_wider_glob_is_refused",
        _TOKENS + "test_token_issue_refuses_a_glob_wider_than_the_charter",
        "tests/cli/test_token_cli.py::test_issue_refuses_a_glob_wider_than_the_charter",
        # a token's claims re-signed with a later expiry (issue 16.5)
        _TOKENS + "test_a_token_re_signed_with_a_later_expiry_is_refused",
        _TOKENS + "test_every_claim_is_pinned_by_the_row",
        "tests/cli/test_token_cli.py::test_verify_refuses_a_token_re_signed_with_a_later_expiry",
        _HTTP + "test_a_refused_token_gets_a_401_naming_the_reason",
        _HTTP + "test_a_second_server_on_another_port_leaves_the_issuer_alone",
    ),
    # DPoP-bound tokens (issue 20)
    "G-DPOP-1": (
        "tests/tools/test_tokens_dpop.py::test_cnf_jkt_is_the_rfc_7638_thumbprint_of_the_given_key",
        "tests/tools/test_tokens_dpop.py::test_a_private_or_malformed_key_is_refused",
        "tests/tools/test_tokens_dpop.py::test_a_dpop_token_verifies_only_with_a_proof_of_its_key",
        "tests/tools/test_tokens_dpop.py::test_the_replay_cache_is_shared_by_every_handle_and_pruned",
        "tests/tools/test_tokens_dpop.py::test_cli_issue_dpop_jwk_and_verify_dpop",
        "tests/server/test_http_dpop.py::test_each_misuse_of_a_dpop_token_is_refused_with_a_dpop_challenge",
        "tests/server/test_http_dpop.py::test_two_proof_headers_are_refused",
        "tests/server/test_http_dpop.py::test_mcp_calls_with_proofs_made_by_node_jose_succeed",
        "tests/server/test_http_dpop_node.py::"
        "test_mcp_calls_with_proofs_made_by_npm_dpop_succeed_and_misuse_is_refused",
        "tests/server/test_http_dpop.py::test_introspection_over_http_returns_the_binding",
    ),
    "G-DPOP-2": (
        "tests/tools/test_dpop_nonce.py::test_a_nonce_lives_one_to_two_windows_and_only_under_its_key",
        "tests/tools/test_dpop_nonce.py::test_every_handle_on_the_home_shares_one_key",
        "tests/tools/test_dpop_nonce.py::test_with_nonces_required_a_proof_needs_a_current_one",
        "tests/server/test_http_dpop.py::test_with_dpop_nonce_a_proof_needs_a_nonce_of_the_home",
        "tests/server/test_http_dpop_node.py::test_the_npm_dpop_client_follows_the_server_nonce",
    ),
    "G-DPOP-3": (
        "tests/server/test_token_http_request.py::"
        "test_the_relying_party_accepts_it_and_the_model_never_sees_the_token",
        "tests/server/test_token_http_request.py::test_an_echoed_token_or_proof_comes_back_redacted",
        "tests/server/test_token_http_request.py::"
        "test_a_request_outside_the_charter_is_refused_before_any_intent",
        "tests/server/test_token_http_request.py::test_the_url_must_be_under_the_audience",
        "tests/server/test_token_http_request.py::test_the_tool_needs_token_issue",
    ),
    # -- crashes, concurrency and resource faults ---------------------------------------------
    "G-CRASH-1": (
        _CRASH + "test_kill_9_at_random_moments_loses_nothing_acknowledged",
        _CRASH + "test_a_restarted_server_continues_the_chain_for_a_real_client",
        _MAIL + "test_intent_refused_means_nothing_is_sent",
        _SECRET + "test_the_intent_is_committed_before_the_request_and_holds_no_value",
        "tests/server/test_plan_gate.py::test_the_plan_runs_in_order_and_lands_with_the_ok_outcome",
        "tests/server/test_plan_gate.py::"
        "test_a_failure_after_the_intent_records_error_and_no_success_effect",
        "tests/server/test_plan_gate.py::"
        "test_an_intent_effect_that_refuses_means_no_intent_and_no_act",
        "tests/server/test_plan_gate.py::test_approval_comes_before_the_intent_and_the_act",
    ),
    "G-CRASH-2": (_CRASH + "test_an_acknowledged_ledger_writer_append_survives_kill_9",),
    "G-CONC-1": (
        _CONC + "test_three_servers_and_the_cli_for_three_seconds",
        _CONC + "test_eight_servers_and_the_cli_for_thirty_seconds",
        _CONC + "test_four_processes_appending_through_ledger_append_leave_one_valid_chain",
    ),
    "G-FAULT-1": (
        _FAULTS + "test_a_full_disk_fails_every_call_closed_and_recovers",
        _FAULTS + "test_the_cli_on_a_full_disk_refuses_clearly",
        _FAULTS + "test_a_server_past_its_file_size_limit_fails_closed",
    ),
    "G-FAULT-2": (
        _FAULTS + "test_a_read_only_filesystem_fails_calls_closed",
        _FAULTS + "test_a_read_only_database_file_fails_calls_closed",
    ),
    "G-FAULT-3": (
        _FAULTS + "test_a_missing_agent_key_stops_its_server_with_a_clear_message",
        _FAULTS + "test_a_missing_log_key_stops_the_server_and_the_cli",
        _FAULTS + "test_a_missing_owner_key_blocks_owner_actions_but_not_the_server",
        _FAULTS + "test_a_missing_vault_key_fails_secret_calls_closed",
        _FAULTS + "test_an_unreadable_key_file_is_refused_with_a_clear_message",
        _FAULTS + "test_a_corrupt_key_file_is_refused_with_a_clear_message",
        _VAULT + "test_a_missing_master_key_is_never_silently_recreated",
    ),
    "G-FAULT-4": (
        _FAULTS + "test_a_database_locked_past_the_busy_timeout_fails_calls_closed",
        _FAULTS + "test_waiting_for_a_held_lock_is_bounded_in_total",
    ),
    # -- keys at rest (issue 19) ----------------------------------------------------------
    "G-DAEMON-1": (
        "tests/security/test_daemon.py::test_the_agent_account_is_served_through_the_socket_and_nothing_else",
        "tests/security/test_daemon.py::test_binding_an_unknown_account_is_refused_with_one_line",
    ),
    "G-KEYS-1": (
        _KEYS + "test_no_private_key_is_in_the_clear_in_a_sealed_home",
        _KEYS + "test_a_passphrase_change_leaves_no_key_in_the_clear",
        _KEYS + "test_keys_passphrase_reseals_everything",
        _KEYS + "test_rotating_the_vault_master_key_keeps_it_sealed",
    ),
    "G-KEYS-2": (
        _KEYS + "test_a_locked_home_fails_cleanly_and_still_verifies",
        _KEYS + "test_serve_unlocks_a_sealed_home_from_the_passphrase_file",
        _KEYS + "test_init_and_agent_add_honour_the_passphrase_file_variable",
    ),
    "G-KEYS-3": (
        _KEYS + "test_an_interrupted_passphrase_change_leaves_a_home_that_opens",
        _KEYS + "test_keys_passphrase_reseals_everything",
        _KEYS + "test_a_running_server_follows_a_passphrase_change",
    ),
    # -- sub-agents (issue 21) -------------------------------------------------------------
    "G-DELEG-1": (
        "tests/server/test_delegation_mcp.py::test_a_wider_request_is_refused_and_recorded",
        "tests/server/test_delegation_mcp.py::"
        "test_without_the_scope_or_beyond_the_depth_nothing_is_delegated",
        "tests/server/test_delegation_mcp.py::"
        "test_the_verifier_rejects_a_parent_signed_charter_wider_than_the_parent",
        "tests/test_delegation.py::test_no_sequence_of_delegations_widens",
        "tests/test_delegation.py::test_a_charter_signed_by_the_wrong_parent_is_rejected",
        "tests/test_delegation.py::test_a_child_outliving_its_parent_is_rejected",
        "tests/test_delegation.py::test_a_broken_link_is_rejected",
        "tests/server/test_token_exchange.py::test_widening_gets_400_and_strangers_are_refused",
    ),
    "G-DELEG-2": (
        "tests/server/test_delegation_mcp.py::"
        "test_revoking_the_parent_stops_the_child_at_its_next_call",
        "tests/server/test_delegation_mcp.py::"
        "test_a_lockdown_stops_the_chain_and_the_parent_revokes_its_own",
        "tests/server/test_delegation_mcp.py::"
        "test_the_verifier_rejects_a_sub_agent_entry_after_its_parent_is_revoked",
        "tests/server/test_token_exchange.py::"
        "test_revoking_the_parent_stops_the_exchanged_token_at_the_next_call",
        "tests/cli/test_delegation_cli.py::"
        "test_the_owner_sees_a_tree_and_can_revoke_any_descendant",
        "tests/server/test_stdio.py::test_a_sub_agent_serves_as_itself_over_stdio",
    ),
    # -- PostgreSQL backend (issue 18) ---------------------------------------------------
    "G-PG-1": (
        _PGC + "test_two_stores_on_one_database_never_fork",
        _PGC + "test_appends_form_one_chain_in_one_order",
    ),
    "G-PG-2": (
        _PGS + "test_a_server_without_synchronous_commit_is_refused",
        _PGS + "test_a_bad_database_url_gets_one_clear_line_without_its_password",
        _PGS + "test_init_refuses_a_database_that_already_holds_a_ledger",
        _PGS + "test_init_database_is_kept_and_every_command_uses_it",
    ),
    # -- Organizations: many owners (issue 28) -----------------------------------------
    "G-ORG-1": (
        _ORGC + "test_another_owners_revoke_is_refused_and_recorded_the_org_keys_is_accepted",
        _ORGC + "test_approvals_go_to_the_agents_owner_and_only_they_decide",
        _ORG + "test_one_owner_revoking_anothers_agent_fails_verification",
        _ORG + "test_one_owner_updating_anothers_agent_fails_verification",
        _ORG + "test_the_organization_key_revokes_any_agent_and_the_ledger_says_who",
    ),
    "G-ORG-2": (
        _ORGC + "test_two_owners_add_agents_both_serve_ledger_verifies_from_org_key",
        _ORG + "test_a_certificate_not_signed_by_the_organization_key_fails",
        _ORG + "test_an_owner_certify_signed_by_another_key_fails",
        _ORG + "test_an_owner_key_used_before_its_certificate_fails",
        _ORG + "test_an_owner_key_used_after_its_removal_fails",
        _ORG + "test_a_charter_signed_by_the_wrong_owner_fails",
        _ORG + "test_a_charter_naming_an_owner_but_signed_by_another_key_fails",
        _ORG + "test_the_organization_key_does_not_sign_charters",
        _ORG + "test_tampering_with_an_organization_ledger_is_caught",
    ),
    "G-ORG-3": (
        _ORGC + "test_owner_remove_stops_that_owners_agents_at_their_next_call",
        _ORG + "test_an_agent_of_a_removed_owner_cannot_sign",
    ),
    "G-ORG-4": (
        "tests/cli/test_home_before_organizations.py::"
        "test_a_home_made_before_organizations_opens_serves_and_verifies",
    ),
    # -- the owner's console (issue 24) ---------------------------------------------------
    "G-CONSOLE-1": ("tests/console/test_console_http.py::test_only_the_loopback_host_is_answered",),
    "G-CONSOLE-2": (
        "tests/console/test_console_http.py::test_every_page_needs_the_session_and_the_login_token_works_once",
        "tests/console/test_console_http.py::test_the_session_cookie_is_httponly_and_samesite_strict",
        "tests/console/test_console_http.py::test_charter_console_prints_a_login_url_and_answers_401_without_it",
    ),
    "G-CONSOLE-3": (
        "tests/console/test_console_http.py::test_a_post_without_the_csrf_token_changes_nothing",
        "tests/console/test_console_http.py::test_lockdown_needs_its_confirmation",
        "tests/console/test_console_browser.py::test_refused_without_the_csrf_token_in_the_browser",
    ),
    "G-CONSOLE-4": (
        "tests/console/test_console_http.py::test_every_response_carries_the_csp_and_no_framing",
        "tests/console/test_console_http.py::test_recorded_text_is_escaped_on_the_approval_page",
    ),
    "G-CONSOLE-5": (
        "tests/server/test_console_url_elicitation.py::test_the_clients_accept_alone_runs_nothing",
        "tests/server/test_console_url_elicitation.py::test_a_console_url_that_cannot_work_is_refused",
    ),
    "G-PG-3": (
        "tests/security/test_pg_dba.py::test_a_dba_edit_delete_insert_or_reorder_is_caught",
        "tests/security/test_pg_dba.py::"
        "test_a_dba_cutting_the_tail_with_its_checkpoints_is_caught_by_a_kept_one",
    ),
    "G-PG-4": (
        "tests/storage/test_pg_team.py::"
        "test_two_http_servers_and_a_stdio_server_act_as_one_charter",
        "tests/storage/test_pg_migrate.py::"
        "test_migrate_copies_the_home_exactly_and_refuses_a_second_run",
        "tests/storage/test_pg_migrate.py::test_migrate_refuses_a_database_that_holds_a_ledger",
        "tests/storage/test_pg_join.py::test_joining_with_another_deployments_keys_is_refused",
    ),
}

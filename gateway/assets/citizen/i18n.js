// Words of the page: zh-CN first (the seed's own words on every button), English as a toggle.
// `t(key, {n: 3})` fills `{n}`. The choice is kept in localStorage.

const zh = {
  title: '互联网预选号牌',
  lang_toggle: 'English',
  lang_toggle_label: 'Switch to English',
  logout: '退出登录',
  practice_banner: '模拟选号 · 练习模式：不占用、不预选任何真实号牌，结果无效',
  practice_exit: '退出模拟',
  stage1: '第一阶段', stage2: '第二阶段',
  step_basic: '基本信息', step_confirm: '确认信息', step_service: '选号服务说明',
  step_identity: '身份验证', step_select: '预选号牌', step_done: '完成号牌预选',
  loading: '正在加载…',
  // login
  login_title: '登录', login_intro: '请使用手机号码和短信验证码登录。',
  phone: '手机号码', phone_hint: '11位手机号码', sms_code: '短信验证码', sms_hint: '6位数字',
  get_code: '获取验证码', resend_in: '{s}秒后重新获取', login_submit: '登录',
  code_sent: '验证码已发送至 {phone}',
  // start
  intro_title: '预选号牌服务说明',
  intro_text: '购买新车后，您可以在到车管所办理注册登记前，通过互联网预选号牌号码。每辆车只能预选一次：可自编号牌，也可从随机号码中选取。预选成功后，须在有效期内到车管所办理注册登记，逾期未办理的将被列入黑名单，2年内不能网上选号。',
  submit_info: '提交信息', practice_start: '模拟选号',
  practice_intro: '模拟选号按真实号池演练全流程，不占用任何号牌。',
  // office
  choose_office: '请选择办理注册登记的车管所', pool_notice: '号池公示', next: '下一步', back: '返回',
  class_small: '小型汽车', class_small_new_energy: '小型新能源汽车',
  pool_title: '{office} 号池公示', pool_as_of: '截至 {time}', pool_available: '可选号码',
  pool_release: '投放批次', pool_total: '投放总数', pool_opens: '开放时间', pool_close: '关闭',
  notice_title: '业务须知', notice_version: '版本 {v}', agree: '阅读并同意', cancel: '取消',
  // confirm info
  vin: '车辆识别代号', vin_hint: '17位，不含字母I、O、Q', voucher: '选号凭证',
  voucher_hint: '国产车为合格证编号，进口车为货物进口证明书编号',
  help_vin_label: '车辆识别代号在哪里？', help_voucher_label: '选号凭证在哪里？',
  help_vin: '国产车：见《机动车整车出厂合格证》第4栏“车辆识别代号/车架号”（17位）。进口车：见《货物进口证明书》“车架号/VIN”栏。车身前挡风玻璃左下角也能看到。',
  help_voucher: '国产车：《机动车整车出厂合格证》右上角的“合格证编号”。进口车：《货物进口证明书》右上角的“证明书编号”。',
  submit: '提交', confirm_submit: '确认提交', confirm_text: '请再次确认信息准确无误，获取并输入短信验证码后提交。',
  vin_bad_at: '第{p}位：{reason}',
  // service description
  service_title: '选号服务说明', office: '车管所', vehicle_class: '号牌种类', custom_left: '剩余自编号牌个数',
  random_left: '剩余随机选号次数', per_check: '每次最多可同时输入号牌数', interval: '两次自编确认最小间隔',
  seconds: '{n}秒', batch_rule: '每次随机选出{n}个号码，{s}秒内有效', validity: '预选号牌有效期',
  working_days: '{n}个工作日', start_selection: '开始选号',
  // identity
  identity_text: '请获取并输入发送到申请手机号码的短信验证码，待“确认”按钮倒计时结束后点击“确认”。',
  confirm: '确认', confirm_in: '确认({s})',
  // selection
  tab_custom: '自编', tab_random: '随机',
  custom_left_line: '您还可以自编{n}个号牌', per_check_line: '最多可以同时输入{n}个号牌号码',
  plate_n: '号牌{n}', add_plate: '添加号牌', remove_plate: '删除',
  keyboard: '号牌键盘', key_backspace: '退格', key_clear: '清空',
  key_disabled_hint: '灰色按键表示号池中没有以此开头的可选号码',
  confirm_pick: '确认选号', confirm_pick_in: '确认选号({s})',
  check_failed: '验证失败：以下号牌均不可选，剩余自编号牌{n}个。',
  reason_taken: '已被预选', reason_held: '正被他人占用', reason_not_in_pool: '不在号池中',
  custom_spent: '自编号牌个数已用完，已为您转到随机选号。',
  exclude_four: '不包含4', draw_once: '随机一次({n})', draw_again: '换一批({n})',
  expires_in: '距失效{s}秒', expired: '已失效', add_candidate: '加入备选', picked: '已加入备选',
  candidates: '备选号牌', no_candidates: '从随机号码中选择1个加入备选。', one_per_batch: '每批随机号码只能选择1个加入备选。',
  random_spent: '随机选号次数已用完。',
  // outcomes
  done_title: '完成号牌预选', done_plate: '预选号牌', register_by: '请于 {date} 前到 {office} 办理注册登记',
  voucher_serial: '凭证编号', voucher_code: '验证码', print_voucher: '打印预选号凭证',
  done_sms: '稍后您将收到预选成功的短信。逾期未办理注册登记的，将被列入黑名单，2年后自动解除。',
  practice_done: '模拟选号完成：此号牌为模拟结果，无效，未被预选。',
  exhausted_title: '无法继续网上选号', exhausted_text: '自编和随机选号次数已用完，请到车管所窗口现场选号。',
  blacklisted_title: '暂停网上选号', blacklisted_text: '您因预选号牌逾期未办理注册登记已被列入黑名单，{date} 自动解除，期间不能网上选号。',
  start_over: '返回首页',
  // errors
  err_network: '网络连接失败，请稍后重试。', err_unauthorized: '登录已失效，请重新登录。',
  err_sms_code_invalid: '验证码不正确。', err_sms_code_expired: '验证码已过期，请重新获取。',
  err_sms_too_soon: '请稍后再试。', err_too_soon: '操作过于频繁，请按倒计时操作。',
  err_voucher_mismatch: '车辆识别代号与选号凭证不匹配。', err_vehicle_not_eligible: '该车辆不能在此车管所预选号牌。',
  err_application_exists: '该车辆已有进行中的申请。', err_vin_already_used: '该车辆已预选过号牌。',
  err_invalid_vin: '车辆识别代号不正确。', err_blacklisted: '您已被列入黑名单，暂不能网上选号。',
  err_identity_not_verified: '请先完成身份验证。', err_hold_expired: '号码已失效，请重新选择。',
  err_not_available: '号码已不可选。', err_selection_closed: '当前不在选号开放时间。',
  err_too_many_requests: '请求过于频繁，请稍后再试。', err_unavailable: '系统繁忙，请稍后重试。',
  err_quota_spent: '选号次数已用完。', err_invalid_plate: '号牌号码不符合编码规则。',
};

const en = {
  title: 'Online plate pre-selection',
  lang_toggle: '中文',
  lang_toggle_label: '切换到中文',
  logout: 'Sign out',
  practice_banner: 'PRACTICE (模拟选号): no real number is held or pre-selected; results are void',
  practice_exit: 'Leave practice',
  stage1: 'Stage 1', stage2: 'Stage 2',
  step_basic: 'Basic information', step_confirm: 'Confirm information', step_service: 'Selection service',
  step_identity: 'Identity', step_select: 'Pick a number', step_done: 'Done',
  loading: 'Loading…',
  login_title: 'Sign in', login_intro: 'Sign in with your mobile number and an SMS code.',
  phone: 'Mobile number', phone_hint: '11-digit mobile number', sms_code: 'SMS code', sms_hint: '6 digits',
  get_code: 'Get code', resend_in: 'Again in {s} s', login_submit: 'Sign in',
  code_sent: 'Code sent to {phone}',
  intro_title: 'About plate pre-selection',
  intro_text: 'After buying a new car you can choose its plate number online before registering the car at the vehicle office. Each car may pre-select once: type numbers yourself or pick from random ones. Register the car in time after pre-selecting, or you are barred from online selection for 2 years.',
  submit_info: 'Start', practice_start: 'Practice',
  practice_intro: 'Practice walks through the whole selection against the real pool without taking any number.',
  choose_office: 'Choose the vehicle office you will register at', pool_notice: 'Pool notice', next: 'Next', back: 'Back',
  class_small: 'Small car', class_small_new_energy: 'Small new-energy car',
  pool_title: '{office}: pool notice', pool_as_of: 'As of {time}', pool_available: 'Available',
  pool_release: 'Release', pool_total: 'Released', pool_opens: 'Opens', pool_close: 'Close',
  notice_title: 'Business notice', notice_version: 'Version {v}', agree: 'I have read and agree', cancel: 'Cancel',
  vin: 'VIN', vin_hint: '17 characters, no I, O or Q', voucher: 'Selection voucher',
  voucher_hint: 'Certificate number (domestic) or import certificate number (imported)',
  help_vin_label: 'Where is the VIN?', help_voucher_label: 'Where is the voucher number?',
  help_vin: 'Domestic cars: box 4 "VIN" of the vehicle certificate of conformity. Imported cars: the "VIN" field of the import certificate. Also visible at the lower left of the windscreen.',
  help_voucher: 'Domestic cars: the certificate number at the top right of the certificate of conformity. Imported cars: the certificate number at the top right of the import certificate.',
  submit: 'Submit', confirm_submit: 'Confirm', confirm_text: 'Check the details once more, then get and enter the SMS code to submit.',
  vin_bad_at: 'Character {p}: {reason}',
  service_title: 'Selection service', office: 'Office', vehicle_class: 'Plate class', custom_left: 'Custom numbers left',
  random_left: 'Random draws left', per_check: 'Numbers per check', interval: 'Least time between checks',
  seconds: '{n} s', batch_rule: 'Each draw shows {n} numbers, valid for {s} s', validity: 'Pre-selection valid for',
  working_days: '{n} working days', start_selection: 'Start selection',
  identity_text: 'Get the SMS code sent to the application\'s phone, enter it, and confirm once the countdown ends.',
  confirm: 'Confirm', confirm_in: 'Confirm ({s})',
  tab_custom: 'Custom', tab_random: 'Random',
  custom_left_line: 'You may still check {n} custom numbers', per_check_line: 'Up to {n} numbers per check',
  plate_n: 'Number {n}', add_plate: 'Add a number', remove_plate: 'Remove',
  keyboard: 'Plate keyboard', key_backspace: 'Delete', key_clear: 'Clear',
  key_disabled_hint: 'Grey keys: no available number continues that way',
  confirm_pick: 'Confirm', confirm_pick_in: 'Confirm ({s})',
  check_failed: 'Check failed: none of these numbers can be chosen. Custom numbers left: {n}.',
  reason_taken: 'already taken', reason_held: 'held by someone else', reason_not_in_pool: 'not in the pool',
  custom_spent: 'No custom numbers left: continuing with random selection.',
  exclude_four: 'No digit 4', draw_once: 'Draw ({n})', draw_again: 'New batch ({n})',
  expires_in: 'Expires in {s} s', expired: 'Expired', add_candidate: 'Keep', picked: 'Kept',
  candidates: 'Candidates', no_candidates: 'Keep one number of each batch as a candidate.', one_per_batch: 'One number per batch may be kept.',
  random_spent: 'No random draws left.',
  done_title: 'Pre-selection complete', done_plate: 'Your number', register_by: 'Register the car at {office} by {date}',
  voucher_serial: 'Voucher no.', voucher_code: 'Verification code', print_voucher: 'Print the pre-selection voucher',
  done_sms: 'An SMS with the number follows. Missing the registration deadline bars you from online selection for 2 years.',
  practice_done: 'Practice complete: this number is void and was not pre-selected.',
  exhausted_title: 'No more online selection', exhausted_text: 'Both quotas are spent: please choose a number at the office counter.',
  blacklisted_title: 'Online selection suspended', blacklisted_text: 'A pre-selected number was not registered in time. Online selection is barred until {date}.',
  start_over: 'Home',
  err_network: 'Network error: try again shortly.', err_unauthorized: 'Your session ended: sign in again.',
  err_sms_code_invalid: 'The code is not right.', err_sms_code_expired: 'The code expired: get a new one.',
  err_sms_too_soon: 'Please wait a moment.', err_too_soon: 'Too soon: follow the countdown.',
  err_voucher_mismatch: 'VIN and voucher do not match.', err_vehicle_not_eligible: 'This vehicle cannot pre-select at this office.',
  err_application_exists: 'This vehicle already has an application in progress.', err_vin_already_used: 'This vehicle has already pre-selected a number.',
  err_invalid_vin: 'The VIN is not valid.', err_blacklisted: 'You are blacklisted from online selection.',
  err_identity_not_verified: 'Verify your identity first.', err_hold_expired: 'The number expired: choose again.',
  err_not_available: 'The number is no longer available.', err_selection_closed: 'Selection is closed at this hour.',
  err_too_many_requests: 'Too many requests: slow down.', err_unavailable: 'Busy: try again shortly.',
  err_quota_spent: 'No selections left.', err_invalid_plate: 'This number breaks the office\'s rules.',
};

// VIN check reasons (POST /v1/vin/check `reason`).
const vinReasons = {
  zh: { wrong_length: '长度应为17位', forbidden_letter: '不能含有字母I、O、Q', invalid_char: '含有无效字符', check_digit: '校验位不正确' },
  en: { wrong_length: 'must be 17 characters', forbidden_letter: 'I, O and Q are not used', invalid_char: 'invalid character', check_digit: 'the check digit does not match' },
};

const tables = { zh, en };
let lang = localStorage.getItem('platepool.lang') === 'en' ? 'en' : 'zh';

export const currentLang = () => lang;

export function setLang(l) {
  lang = l === 'en' ? 'en' : 'zh';
  localStorage.setItem('platepool.lang', lang);
  document.documentElement.lang = lang === 'en' ? 'en' : 'zh-CN';
}

export function t(key, params = {}) {
  const text = tables[lang][key] ?? tables.zh[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => (params[k] ?? `{${k}}`));
}

export function vinReason(code, fallback) {
  return vinReasons[lang][code] || fallback || code;
}

/** The words for an API error: ours for known codes, the server's message otherwise. */
export function errorText(err) {
  const key = 'err_' + (err.code || '');
  return tables[lang][key] ? t(key) : (err.message || String(err));
}

/** A date (RFC 3339) as the office's local date (UTC+8). */
export function officeDate(rfc3339) {
  const d = new Date(Date.parse(rfc3339) + 8 * 3600 * 1000);
  const y = d.getUTCFullYear(), m = d.getUTCMonth() + 1, day = d.getUTCDate();
  return lang === 'en' ? `${y}-${String(m).padStart(2, '0')}-${String(day).padStart(2, '0')}` : `${y}年${m}月${day}日`;
}

/** A time (RFC 3339) in the office's local time, to the minute. */
export function officeTime(rfc3339) {
  const d = new Date(Date.parse(rfc3339) + 8 * 3600 * 1000);
  const hh = String(d.getUTCHours()).padStart(2, '0'), mm = String(d.getUTCMinutes()).padStart(2, '0');
  return `${officeDate(rfc3339)} ${hh}:${mm}`;
}

setLang(lang);

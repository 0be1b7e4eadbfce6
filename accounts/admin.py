from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.admin.forms import AdminPasswordChangeForm as AdminOwnPasswordChangeForm
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm
from django.contrib.auth.models import Group
from django.contrib.auth.views import PasswordChangeView
from django.urls import reverse
from rest_framework.exceptions import ValidationError

from accounts import services
from accounts.managers import email_lower, normalize_email
from accounts.models import User
from accounts.throttling import (
    AdminLoginEmailThrottle,
    LoginIPThrottle,
    PasswordChangeThrottle,
    refunded_if_busy,
    throttles_wait,
)
from auth_service.exceptions import allow_methods, error_body

ADMIN_THROTTLED = "Too many sign-in attempts. Try again in {seconds} seconds."
ADMIN_CHANGE_THROTTLED = "Too many password change attempts. Try again in {seconds} seconds."


class StaffSignInForm(AdminAuthenticationForm):
    # Django's own text says both fields may be case-sensitive; an email address is not here.
    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "invalid_login": (
            "Please enter the correct email address and password for a staff account. The "
            "password is case-sensitive; the email address is not."
        ),
    }


admin.site.login_form = StaffSignInForm


@allow_methods("GET", "HEAD", "POST", "OPTIONS")  # TRACE got Django's HTML 405
def admin_login(request, extra_context=None):
    """The admin's sign-in under the API login's limits: staff passwords are the ones most
    worth guessing, and the admin form checks a password like the API does."""
    if request.method == "POST":
        wait = throttles_wait([LoginIPThrottle(), AdminLoginEmailThrottle()], request)
        if wait:
            return _throttled(ADMIN_THROTTLED, wait)
    with refunded_if_busy(request):
        return admin.site.login(request, extra_context)


def _throttled(message: str, wait: int):
    """The contract's throttled response, as the API's login and password change give it."""
    response = error_body(message.format(seconds=wait), "throttled", 429)
    response["Retry-After"] = str(wait)
    return response


@allow_methods("GET", "HEAD", "POST", "OPTIONS")
def admin_password_change(request, extra_context=None):
    """The admin's own-password form under the API's password-change limit: it checks the
    current password too, so a stolen staff session must not guess it at the hasher's speed.
    The API and this form count against one budget per user."""
    if request.method == "POST":
        wait = throttles_wait([PasswordChangeThrottle()], request)
        if wait:
            return _throttled(ADMIN_CHANGE_THROTTLED, wait)
    with refunded_if_busy(request):
        return admin.site.admin_view(_own_password_change)(request, extra_context)


class OwnPasswordForm(AdminOwnPasswordChangeForm):
    """The admin's own-password form, saved as the API saves a changed password: every other
    session and emailed reset link ends, the user is told by email, and the new password is
    stored only over the hash the old one was checked against."""

    def clean_old_password(self):
        old_password = super().clean_old_password()
        # The check may have stored a re-hash of it (User.check_password): this is the hash the
        # old password holds for now. A change committed since (another tab, the API) must not
        # be overwritten by one that proved the password it replaced.
        self.proven_hash = self.user.password
        return old_password

    def clean(self):
        cleaned = super().clean()
        # As the API's change: a "change" to the same password would only end every session.
        if cleaned.get("new_password1") and cleaned.get("new_password1") == cleaned.get(
            "old_password"
        ):
            self.add_error("new_password1", services.SAME_PASSWORD)
        return cleaned

    def save(self, commit: bool = True) -> User:
        if commit:
            services.password_set(
                user=self.user,
                password=self.cleaned_data["new_password1"],
                proven_hash=self.proven_hash,
            )
        return self.user


class OwnPasswordChangeView(PasswordChangeView):
    form_class = OwnPasswordForm

    def form_valid(self, form):
        try:
            return super().form_valid(form)
        except ValidationError:
            # Another change was saved since the old password was checked: it is wrong now, as
            # the API's change answers.
            form.add_error("old_password", form.error_messages["password_incorrect"])
            return self.form_invalid(form)


def _own_password_change(request, extra_context=None):
    # AdminSite.password_change, with the form above (the site offers no way to choose one).
    request.current_app = admin.site.name
    return OwnPasswordChangeView.as_view(
        success_url=reverse("admin:password_change_done", current_app=admin.site.name),
        extra_context={**admin.site.each_context(request), **(extra_context or {})},
    )(request)


class UserCreateForm(UserCreationForm):
    class Meta:
        model = User
        fields = ("email", "full_name")


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = ("email", "full_name")


class UserPasswordForm(AdminPasswordChangeForm):
    """The admin's password form, saved as the API saves a new password: every session and
    emailed reset link ends, and the user is told by email."""

    def save(self, commit: bool = True) -> User:
        if not commit:
            return super().save(commit=False)
        usable = self.cleaned_data["set_usable_password"]
        # None: "password-based authentication disabled", an unusable password.
        services.password_set(
            user=self.user, password=self.cleaned_data["password1"] if usable else None
        )
        return self.user


# What grants access to the admin or permissions in it. Django's user admin lets anyone who
# may change users set these, on their own account too: "change user" would be a superuser.
PRIVILEGE_FIELDS = ("is_staff", "is_superuser", "groups", "user_permissions")


def _may_manage(request, user: User | None) -> bool:
    """Whether the signed-in staff member may change or delete this account (None: accounts in
    general). A staff or superuser account, their own included, only a superuser may: whoever
    sets its password or email holds its permissions."""
    if user is None or request.user.is_superuser:
        return True
    return not (user.is_staff or user.is_superuser)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = UserEditForm
    add_form = UserCreateForm
    change_password_form = UserPasswordForm
    ordering = ("email",)
    list_display = ("email", "full_name", "is_active", "is_staff", "date_joined")
    search_fields = ("email", "full_name")

    def get_readonly_fields(self, request, obj=None):
        readonly = tuple(super().get_readonly_fields(request, obj))
        return readonly if request.user.is_superuser else (*readonly, *PRIVILEGE_FIELDS)

    # The password form and the bulk delete ask these too.
    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and _may_manage(request, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and _may_manage(request, obj)

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        # Only the columns the form changed: a full save would write back the password hash
        # (and the rest of the row) as the form loaded it, undoing a reset or password change
        # committed meanwhile, and bringing that reset's used link back to life.
        columns = {field.name for field in obj._meta.concrete_fields}
        changed = [name for name in form.changed_data if name in columns]
        if changed:
            obj.save(update_fields=changed)

    def get_search_results(self, request, queryset, search_term):
        """Also the term as emails are stored: an address typed with its international domain
        ("ada@bücher.example") finds the account stored as "ada@xn--bcher-kva.example"."""
        results, duplicates = super().get_search_results(request, queryset, search_term)
        term = email_lower(search_term.strip())
        # An address, or a domain (or the start of one) alone: "@" first, so IDNA sees one.
        stored = normalize_email(term if "@" in term else f"@{term}").lstrip("@")
        if term and stored != term:
            results |= queryset.filter(email__icontains=stored)
        return results, duplicates

    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("full_name",)}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "full_name", "password1", "password2"),
            },
        ),
    )


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(BaseGroupAdmin):
    """Groups hold permissions: only a superuser edits them, or a member allowed to change
    groups could give their own whatever it lacks."""

    def has_add_permission(self, request):
        return request.user.is_superuser and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser and super().has_delete_permission(request, obj)
